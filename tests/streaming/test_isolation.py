"""Transient vs permanent errors, the rule (`streaming.isolation.isolate`) driven by plain
functions: a dependency's failure is retried whole and dead-letters nothing; a row whose data
makes the call raise is isolated and the other rows are scored. The scorer's side, against the
real broker, online store and registry, is in test_poison.py."""

from __future__ import annotations

import gc
import sqlite3

import numpy as np
import pytest

from cardscore.streaming.isolation import DependencyFailure, dependency_error, isolate


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


def cyclic_garbage(call) -> list[str]:
    """The types of the objects `call` left that only the garbage collector can free."""
    gc.collect()
    gc.disable()
    try:
        call()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        return sorted({type(o).__name__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_a_clean_batch_leaves_no_reference_cycle() -> None:
    # A cycle per batch keeps the batch alive until the collector's next pass: its pauses then
    # grow with every batch since the last one, and set the stream's p99.
    batch = [object() for _ in range(100)]  # what the scorer's closure holds: its batch
    assert cyclic_garbage(lambda: isolate(len(batch), lambda rows: [batch[r] for r in rows],
                                          probe=lambda: None)) == []


def test_isolating_poison_rows_keeps_the_same_order_of_attempts() -> None:
    calls: list[list[int]] = []
    out = isolate(8, scorer_of({5}, calls), probe=lambda: None)
    # depth first, lower half first: what the recursive version did
    assert calls == [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [4], [5], [5], [6, 7]]
    assert [p for p, _ in out.poison] == [5] and out.attempts == len(calls)
