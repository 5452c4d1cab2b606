"""A transaction id seen twice with different content: the first is scored, a later copy with
other content is dead-lettered as `duplicate_conflict` (or scored and flagged), an identical
copy is scored again; the state is a bounded per-partition window."""

from __future__ import annotations

import json

import numpy as np
from confluent_kafka import Message

from cardscore.core.config import Settings
from cardscore.streaming import dlq
from cardscore.streaming.duplicates import RecentTransactions
from cardscore.streaming.messages import split_messages
from cardscore.streaming.output import DUPLICATE_CONFLICT_HEADER
from tests.corpus import DUPLICATES, GOOD
from tests.streaming import world


def batch(*items: tuple[int, int, float], partition: int = 0):
    """(offset, transaction id, amount) -> a validated batch of messages of one partition."""
    messages = [
        Message(topic="tx", partition=partition, offset=offset, key=b"3",
                value=json.dumps({**GOOD, "transaction_id": tx, "amount": amount}).encode(), timestamp=(1, 1))
        for offset, tx, amount in items
    ]
    return split_messages(messages, 1 << 16).valid


def remember_all(recent: RecentTransactions, valid) -> None:
    recent.remember(valid, np.arange(len(valid)))


def test_conflicts_are_found_in_the_batch_and_against_the_window() -> None:
    recent = RecentTransactions(window=100)
    first = batch((0, 1, 5.0), (1, 2, 5.0), (2, 1, 6.0), (3, 2, 5.0))
    assert recent.conflicts(first) == {2: "tx[0]@0"}  # id 2 again, same content: a repeat
    remember_all(recent, first.take(np.array([0, 1, 3])))
    later = batch((10, 1, 5.0), (11, 1, 7.0), (12, 3, 1.0))
    assert recent.conflicts(later) == {1: "tx[0]@0"}
    assert recent.conflicts(batch((0, 1, 5.0))) == {}  # the first message itself, read again


def test_the_window_is_bounded_per_partition_and_forgotten_on_revocation() -> None:
    recent = RecentTransactions(window=3)
    remember_all(recent, batch(*[(i, i, 1.0) for i in range(10)]))
    remember_all(recent, batch((0, 100, 1.0), partition=1))
    assert len(recent) == 4  # 3 of partition 0 (the newest) + 1 of partition 1
    assert recent.conflicts(batch((20, 9, 2.0))) == {0: "tx[0]@9"}
    assert recent.conflicts(batch((21, 0, 2.0))) == {}  # beyond the window: not caught (documented)
    assert recent.conflicts(batch((5, 100, 2.0))) == {}  # another partition's id: not caught
    recent.forget({("tx", 0)})
    assert len(recent) == 1 and recent.conflicts(batch((22, 9, 2.0))) == {}
    assert RecentTransactions(window=0).conflicts(batch((0, 1, 1.0), (1, 1, 2.0))) == {}  # off


def run_duplicates(settings: Settings) -> tuple[dict[int, list[dict]], list[Message], float, list[Message]]:
    # One key, one partition: the copies meet in one scorer's window.
    world.produce(settings, [(b"2", raw) for _, raw, _, _ in DUPLICATES])
    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.totals.get("messages", 0) >= len(DUPLICATES), 60, "every message")
        conflicts = running.metric("cardscore_stream_duplicate_conflicts_total")
    scores = world.read_all(settings, settings.kafka.topics.scores)
    return world.scores_by_id(scores), world.read_all(settings, settings.kafka.topics.dlq), conflicts, scores


def locations(settings: Settings) -> list[str]:
    """Where each produced message is (they share a key: one partition, in order)."""
    found = sorted((m.partition(), m.offset()) for m in world.read_all(settings, settings.kafka.topics.transactions))
    assert len({p for p, _ in found}) == 1
    return [f"{settings.kafka.topics.transactions}[{p}]@{o}" for p, o in found]


def test_a_later_copy_with_other_content_is_dead_lettered_as_ingest_rejects_it(stream_settings: Settings) -> None:
    settings = stream_settings
    by_id, dead, conflicts, _ = run_duplicates(settings)
    expected_scores = [json.loads(raw)["transaction_id"] for _, raw, _, stream in DUPLICATES if stream == "scored"]
    assert sorted(tx for tx, copies in by_id.items() for _ in copies) == sorted(expected_scores)
    assert len(by_id[201]) == 1 and by_id[202][0]["event_time"] == "2018-04-01T08:00:00Z"  # first copies
    expected_dead = [raw for _, raw, _, stream in DUPLICATES if stream == "duplicate_conflict"]
    assert [m.value() for m in dead] == expected_dead and conflicts == len(expected_dead)
    where = locations(settings)
    for message in dead:
        headers = message.headers()
        assert dlq.header(headers, dlq.REASON) == "duplicate_conflict"
        tx = json.loads(message.value())["transaction_id"]
        first = next(i for i, (_, raw, _, _) in enumerate(DUPLICATES) if json.loads(raw)["transaction_id"] == tx)
        assert dlq.header(headers, dlq.DUPLICATE_FIRST) == where[first]
        assert f"transaction_id {tx} was seen before" in dlq.header(headers, dlq.DETAIL)


def test_score_flagged_scores_the_later_copy_with_a_header(stream_settings: Settings) -> None:
    settings = stream_settings.model_copy(update={"streaming": stream_settings.streaming.model_copy(
        update={"duplicate_conflicts": "score_flagged"})})
    by_id, dead, conflicts, scores = run_duplicates(settings)
    assert dead == [] and conflicts == 2
    assert len(by_id[201]) == 2 and len(by_id[202]) == 2 and len(by_id[203]) == 3
    flagged = [m for m in scores if dlq.header(m.headers(), DUPLICATE_CONFLICT_HEADER)]
    assert sorted(json.loads(m.value())["transaction_id"] for m in flagged) == [201, 202]
    first_of = {201: 0, 202: 2}
    where = locations(settings)
    for m in flagged:
        tx = json.loads(m.value())["transaction_id"]
        assert dlq.header(m.headers(), DUPLICATE_CONFLICT_HEADER) == where[first_of[tx]]
