"""stream.progress: cumulative totals at most every interval, only after a change."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from cardscore.streaming.progress import Progress
from tests.streaming.world import JsonLogLines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines() -> Iterator[JsonLogLines]:
    handler = JsonLogLines()
    logger = logging.getLogger("cardscore.streaming.progress")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_progress_logs_cumulative_totals_once_per_interval_and_only_after_a_change(lines: JsonLogLines) -> None:
    clock = Clock()
    progress = Progress(10.0, clock=clock)
    assert not progress.maybe_log()  # nothing happened yet
    progress.batch(12, 11, {"invalid_json": 1}, 0)
    clock.now += 4.0
    assert not progress.maybe_log()  # within the interval
    progress.batch(8, 6, {"invalid_json": 1, "schema_violation": 1}, 2)
    progress.retry()
    clock.now += 6.0
    assert progress.maybe_log(model_version="3")
    assert not progress.maybe_log()  # no change since
    clock.now += 30.0
    assert not progress.maybe_log()  # idle: no line repeating the same totals
    progress.batch(30, 30, {}, 0)
    assert progress.maybe_log()
    first, second = lines.events("stream.progress")
    assert first == {**first, "batches": 2, "messages": 20, "scored": 17, "dlq": 3, "flagged": 2, "retries": 1,
                     "dlq_reasons": {"invalid_json": 2, "schema_violation": 1}, "model_version": "3",
                     "messages_per_s": 2.0, "interval_s": 10.0}
    assert second["messages"] == 50 and second["messages_per_s"] == 1.0 and second["interval_s"] == 30.0
    assert progress.fields()["dlq_reasons"] == {"invalid_json": 2, "schema_violation": 1}


def test_progress_at_interval_zero_logs_after_every_change(lines: JsonLogLines) -> None:
    progress = Progress(0.0, clock=Clock())  # the clock stands still: no rate
    progress.batch(5, 5, {}, 0)
    assert progress.maybe_log()
    progress.batch(5, 4, {"invalid_json": 1}, 0)
    assert progress.maybe_log()
    assert [e["scored"] for e in lines.events("stream.progress")] == [5, 9]
    assert lines.events("stream.progress")[-1]["messages_per_s"] is None
