"""A transaction id seen twice with different content, against the real broker, store and
registry: the first is scored, a later copy with other content is dead-lettered as
`duplicate_conflict` (or scored and flagged), an identical copy is scored again. The bounded
per-partition window itself is tested in test_units.py."""

from __future__ import annotations

import json

from confluent_kafka import Message

from cardscore.core.config import Settings
from cardscore.streaming import dlq
from tests.corpus import DUPLICATES
from tests.streaming import world


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
    from cardscore.streaming.output import DUPLICATE_CONFLICT_HEADER

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
