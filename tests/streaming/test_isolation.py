"""Transient vs permanent errors: a dependency's failure is retried whole and dead-letters
nothing; a message whose data makes the lookup (or the model) raise is isolated, dead-lettered
as `unprocessable`, and its batch-mates are scored.

The unit tests drive `isolate` with plain functions; the scorer tests use the real broker,
online store and registry, with a fault injected into the real Feast lookup: a data error
(records of one terminal make it raise) or an outage whose error looks like a data error (every
call raises ValueError until it is lifted)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from cardscore.core.config import Settings
from cardscore.streaming import dlq
from cardscore.streaming.features import FeastLookup
from cardscore.streaming.isolation import DependencyFailure, dependency_error, isolate
from tests.streaming import world

# ------------------------------------------------------------------------------ isolate()


def scorer_of(bad: set[int], calls: list[list[int]]):
    def attempt(rows: np.ndarray) -> list[int]:
        calls.append(rows.tolist())
        if bad & set(rows.tolist()):
            raise ValueError("Out of bounds nanosecond timestamp")
        return [r * 10 for r in rows.tolist()]

    return attempt


def test_a_clean_batch_takes_one_call() -> None:
    calls: list[list[int]] = []
    out = isolate(100, scorer_of(set(), calls), probe=lambda: None)
    assert calls == [list(range(100))] and out.poison == [] and out.attempts == 1


@pytest.mark.parametrize("bad", [{0}, {99}, {17, 18}, {3, 50, 97}, set(range(0, 100, 10))])
def test_poison_rows_are_isolated_and_every_other_row_is_scored(bad: set[int]) -> None:
    calls: list[list[int]] = []
    out = isolate(100, scorer_of(bad, calls), probe=lambda: None)
    assert sorted(row for row, _ in out.poison) == sorted(bad)
    assert all(isinstance(exc, ValueError) for _, exc in out.poison)
    scored = [row for rows, _ in out.parts for row in rows.tolist()]
    assert scored == sorted(set(range(100)) - bad)  # every other row, once, in order
    assert [v for _, values in out.parts for v in values] == [r * 10 for r in scored]
    # splitting costs about 2 log2(n) calls per poison row, not one call per row
    assert out.attempts <= 1 + len(bad) * (2 * 7 + 2)


def test_a_single_poison_message_is_confirmed_before_it_is_rejected() -> None:
    calls: list[list[int]] = []
    out = isolate(1, scorer_of({0}, calls), probe=lambda: None)
    assert [row for row, _ in out.poison] == [0] and calls == [[0], [0]]


@pytest.mark.parametrize("n", [1, 8])
def test_rows_that_pass_when_tried_again_are_scored_not_rejected(n: int) -> None:
    failures = {"left": 1}  # the first call fails (a flaky moment), then every call passes

    def attempt(rows: np.ndarray) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise ValueError("flaky")
        return len(rows)

    out = isolate(n, attempt, probe=lambda: None)
    assert out.poison == [] and sum(p[1] for p in out.parts) == n


def test_a_dependency_error_is_retried_not_isolated() -> None:
    def attempt(rows: np.ndarray) -> None:
        raise sqlite3.OperationalError("database is locked")

    probed: list[bool] = []
    with pytest.raises(DependencyFailure, match="database is locked"):
        isolate(10, attempt, probe=lambda: probed.append(True))
    assert probed == []  # known by its type: no probe, no splitting


def test_an_outage_that_looks_like_bad_data_is_found_by_the_probe() -> None:
    calls: list[int] = []

    def attempt(rows: np.ndarray) -> None:
        calls.append(len(rows))
        raise ValueError("unexpected response")

    def probe() -> None:
        raise ValueError("unexpected response")

    with pytest.raises(DependencyFailure, match="known-good record fails too"):
        isolate(10, attempt, probe)
    assert calls == [10]  # nothing split, nothing rejected


def test_a_dependency_failing_while_splitting_aborts_the_whole_batch() -> None:
    state = {"calls": 0}

    def attempt(rows: np.ndarray) -> None:
        state["calls"] += 1
        if state["calls"] == 1:
            raise ValueError("bad row somewhere")
        raise ConnectionResetError("store went away")

    with pytest.raises(DependencyFailure, match="store went away"):
        isolate(10, attempt, probe=lambda: None)


def test_dependency_errors_are_recognised_through_their_cause() -> None:
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as inner:
            raise RuntimeError("lookup failed") from inner
    except RuntimeError as wrapped:
        assert dependency_error(wrapped)
    assert not dependency_error(ValueError("year 2300 is out of range"))
    assert not dependency_error(OverflowError("int too large"))


# ------------------------------------------------------------------------------ the scorer


POISON_TERMINAL = 666


class FaultyLookup:
    """The real Feast lookup, with a fault injected: records of `POISON_TERMINAL` make it raise
    (a data error), and while `outage` is set every call raises ValueError (an outage whose
    error looks like a data error)."""

    def __init__(self, settings: Settings) -> None:
        self.real = FeastLookup(settings)
        self.outage = threading.Event()
        self.calls = 0

    def __call__(self, records: Sequence[Mapping[str, Any]]):
        self.calls += 1
        if self.outage.is_set():
            raise ValueError("the feature server answered garbage")
        if any(r["terminal_id"] == POISON_TERMINAL for r in records):
            raise ValueError("cannot serve terminal 666")
        return self.real(records)


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
