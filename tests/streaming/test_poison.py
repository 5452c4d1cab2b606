"""Poison messages: valid JSON holding values Python, pandas, NumPy or Feast cannot take. Each is
rejected with its reason or scored correctly; none crashes the scorer or holds up its batch.

Seen before the fix: an integer of thousands of digits (Python's int-string limit: ValueError,
reported by the CLI as "invalid option", exit 2), an amount of hundreds of digits
(OverflowError, exit 1), an event time in a year pandas' nanosecond timestamps cannot hold (the
lookup failed and the whole batch was retried forever), an event time just before 1970 with a
fraction (its night flag came from a time truncated toward zero).

And what the contract cannot foresee: a message that still makes the lookup raise is isolated
and dead-lettered (`unprocessable`) while its batch-mates are scored, and an outage whose error
looks like a data error is retried, not dead-lettered. The fault is injected into the real
lookup: records of one terminal make it raise, or every call raises while `outage` is set.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from cardscore.core.config import Settings
from cardscore.features.definitions import MODEL_FEATURES, TX_DURING_NIGHT, TX_DURING_WEEKEND
from cardscore.features.request_time import request_time_record
from cardscore.schemas.timestamps import format_timestamp_us
from cardscore.streaming import dlq
from cardscore.streaming.features import open_lookup
from cardscore.streaming.messages import TransactionBatch, batch_of
from tests.streaming import world


def poison(record: dict, field: str, token: str) -> bytes:
    """`record` as a JSON line whose `field` is the raw token `token`."""
    text = json.dumps({**record, "event_time": format_timestamp_us(record["event_time"]), field: "__TOKEN__"})
    return text.replace('"__TOKEN__"', token).encode()


def poison_batch(seed: int) -> tuple[list[dict], list[tuple[bytes, bytes, str]]]:
    good = world.transactions(30, seed=seed)
    base = {**good[0], "transaction_id": 10**12}
    bad = [
        (b"digits", poison(base, "customer_id", "9" * 5000), "out_of_range"),
        (b"negative-digits", poison(base, "terminal_id", "-" + "9" * 5000), "out_of_range"),
        (b"amount-400", poison(base, "amount", "9" * 400), "not_finite"),
        (b"amount-200", poison(base, "amount", "9" * 200), "out_of_range"),
        (b"year-2300", poison(base, "event_time", '"2300-01-01T12:00:00Z"'), "out_of_range"),
        (b"year-2262", poison(base, "event_time", '"2262-04-12T00:00:00Z"'), "out_of_range"),
        (b"before-1970", poison(base, "event_time", '"1969-12-31T23:59:59.5Z"'), "out_of_range"),
        (b"arabic-digits", poison(base, "event_time", '"\\u0662\\u0660\\u0661\\u0668-04-07T10:00:00Z"'),
         "bad_timestamp"),
    ]
    return good, bad


def test_poison_values_are_rejected_and_their_batch_is_scored_at_once(stream_settings: Settings) -> None:
    settings = stream_settings
    good, bad = poison_batch(seed=51)
    items: list[object] = []
    for i, record in enumerate(good):
        items.append(record)
        if i < len(bad):
            items.append(bad[i][:2])
    world.produce(settings, items)
    with world.InProcessScorer(settings) as running:  # test batches hold 50: one or two batches
        running.wait_for(lambda: running.totals.get("messages", 0) >= len(items), 60, "every message")
        retries = sum(running.metric("cardscore_stream_retries_total", {"stage": s}) for s in ("lookup", "delivery"))
    assert retries == 0
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in good)
    dead = {m.key(): m for m in world.read_all(settings, settings.kafka.topics.dlq)}
    assert {key: dlq.header(m.headers(), dlq.REASON) for key, m in dead.items()} == {k: r for k, _, r in bad}
    assert all(dead[key].value() == raw for key, raw, _ in bad)


@pytest.mark.parametrize("reader", ["snapshot", "feast"])
def test_request_time_flags_are_exact_over_the_whole_contract_range(stream_settings: Settings, reader: str) -> None:
    """The stream's lookup (the in-memory snapshot reader, and Feast's get_online_features, the
    reference) serves the night and weekend flags of the integer-microsecond definition at the
    edges of the event-time range and around the hour and day boundaries."""
    from cardscore.schemas.contracts import EVENT_TIME_MAX_US, EVENT_TIME_MIN_US

    settings = stream_settings.model_copy(
        update={"features": stream_settings.features.model_copy(update={"online_reader": reader})})
    lookup = open_lookup(settings)
    hour, day = 3_600_000_000, 86_400_000_000
    instants = [
        EVENT_TIME_MIN_US, EVENT_TIME_MIN_US + 1, EVENT_TIME_MIN_US + 7 * hour - 1, EVENT_TIME_MIN_US + 7 * hour,
        EVENT_TIME_MAX_US, EVENT_TIME_MAX_US - 17 * hour, EVENT_TIME_MAX_US - day,
        1_523_059_200_000_000 + 6 * hour + hour - 1,  # 2018-04-07T06:59:59.999999Z
        1_523_059_200_000_000 - 1,  # the last microsecond of a Friday
        7_000_000_000_000_000 + 123_456,  # 2191, with a fraction
    ]
    records = [{"transaction_id": i, "event_time": t, "customer_id": 1, "terminal_id": 1, "amount": 10.0}
               for i, t in enumerate(instants)]
    found = lookup(batch_of(records))
    lookup.close()
    night = found.matrix[:, MODEL_FEATURES.index(TX_DURING_NIGHT)]
    weekend = found.matrix[:, MODEL_FEATURES.index(TX_DURING_WEEKEND)]
    expected = [request_time_record(10.0, t) for t in instants]
    assert night.tolist() == [e[TX_DURING_NIGHT] for e in expected]
    assert weekend.tolist() == [e[TX_DURING_WEEKEND] for e in expected]
    assert np.isfinite(found.matrix).all()


def test_a_scorer_process_keeps_scoring_after_poison(stream_settings: Settings, tmp_path: Path, spawn) -> None:
    """`python -m cardscore.streaming` as deployed: the poison batch does not stop it (exit 2
    "invalid option" and exit 1 before the fix), and what comes after is scored."""
    settings = stream_settings
    good, bad = poison_batch(seed=52)
    config = world.write_config(settings, tmp_path / "scorer.yaml")
    scorer = spawn(config, tmp_path / "scorer.log", "--instance-id", "poison-1")
    world.produce(settings, [*good[:10], *(item[:2] for item in bad), *good[10:20]])
    scorer.wait_for(lambda p: p.scored() >= 20, 90, "the first 20 scores")
    world.produce(settings, good[20:])
    scorer.wait_for(lambda p: p.scored() >= 30, 90, "the scores after the poison")
    assert scorer.proc.poll() is None
    scorer.proc.send_signal(signal.SIGTERM)
    assert scorer.proc.wait(30) == 0, scorer.log.read_text()[-2000:]
    assert scorer.events("stream.stopped")[-1]["dlq"] == len(bad)


POISON_TERMINAL = 666


class FaultyLookup:
    """The stream's real lookup, with a fault injected: records of `POISON_TERMINAL` make it raise
    (a data error), and while `outage` is set every call raises ValueError (an outage whose
    error looks like a data error)."""

    def __init__(self, settings: Settings) -> None:
        self.real = open_lookup(settings)
        self.outage = threading.Event()
        self.calls = 0

    def __call__(self, batch: TransactionBatch):
        self.calls += 1
        if self.outage.is_set():
            raise ValueError("the feature server answered garbage")
        if (batch.terminal_id == POISON_TERMINAL).any():
            raise ValueError("cannot serve terminal 666")
        return self.real(batch)

    def close(self) -> None:
        self.real.close()


def test_a_message_that_breaks_the_lookup_is_dead_lettered_and_its_batch_is_scored(
    stream_settings: Settings,
) -> None:
    settings = stream_settings
    records = world.transactions(40, seed=41)
    poison = [dict(records[i], terminal_id=POISON_TERMINAL) for i in (3, 22)]
    for p in poison:
        records.remove(next(r for r in records if r["transaction_id"] == p["transaction_id"]))
    items = [*records[:20], poison[0], *records[20:], poison[1]]
    world.produce(settings, items)
    lookup = FaultyLookup(settings)
    with world.InProcessScorer(settings, lookup=lookup) as running:
        running.wait_for(lambda: running.totals.get("messages", 0) >= len(items), 60, "every message")
        retries = running.metric("cardscore_stream_retries_total", {"stage": "lookup"})
        unprocessable = running.metric("cardscore_stream_dlq_messages_total", {"reason": "unprocessable"})
    assert retries == 0  # a data error is never retried as a whole batch
    assert unprocessable == 2
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in records)
    assert all(len(v) == 1 for v in scores.values())
    dead = world.read_all(settings, settings.kafka.topics.dlq)
    assert sorted(int(m.key()) for m in dead) == sorted(p["customer_id"] for p in poison)
    for message in dead:
        assert dlq.header(message.headers(), dlq.REASON) == "unprocessable"
        assert "cannot serve terminal 666" in dlq.header(message.headers(), dlq.DETAIL)
        assert json.loads(message.value())["terminal_id"] == POISON_TERMINAL


def test_an_outage_that_looks_like_a_data_error_is_retried_and_dead_letters_nothing(
    stream_settings: Settings,
) -> None:
    settings = stream_settings
    records = world.transactions(120, seed=42)
    lookup = FaultyLookup(settings)
    with world.InProcessScorer(settings, lookup=lookup) as running:
        world.produce(settings, records[:40])
        running.wait_for(lambda: running.totals.get("scored", 0) == 40, 60, "the first 40 scores")
        lookup.outage.set()
        world.produce(settings, records[40:])
        retries = {"stage": "lookup"}
        running.wait_for(lambda: running.metric("cardscore_stream_retries_total", retries) >= 3, 60, "retries")
        assert running.totals["scored"] == 40 and running.totals.get("dlq", 0) == 0
        assert running.metric("cardscore_stream_dependency_up", {"dependency": "online_store"}) == 0
        lookup.outage.clear()
        running.wait_for(lambda: running.totals.get("scored", 0) == 120, 60, "the rest after the outage")
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in records)
    assert world.read_all(settings, settings.kafka.topics.dlq) == []
