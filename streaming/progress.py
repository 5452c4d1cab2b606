"""The scorer's progress in its log: cumulative totals every `progress_interval_seconds`.

A line per micro-batch was the scorer's log until it ran at thousands of events/s: hundreds of
lines a second that no operator reads, and a tenth of the loop's time spent formatting them (a
cProfile of a paced run on Kafka at 5,000 events/s, where batches hold ~12 messages). The
per-batch line is now at DEBUG. `stream.progress` gives, at most once per interval and only
when something happened since the previous line, the totals so far (the ones `stream.stopped`
gives at the end) and the rate since the previous line.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cardscore.core.logs import get_logger

log = get_logger("streaming.progress")


@dataclass
class Progress:
    """Cumulative totals of one scorer; `maybe_log()` writes `stream.progress` when due.
    `interval_seconds` 0 logs after every change (tests wait on the log)."""

    interval_seconds: float
    clock: Callable[[], float] = time.monotonic
    totals: Counter[str] = field(default_factory=Counter)
    dlq_reasons: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._logged_at = self.clock()
        self._logged_messages = 0
        self._changed = False

    def batch(self, messages: int, scored: int, reasons: Mapping[str, int], flagged: int) -> None:
        """An acknowledged batch: `messages` taken, `scored` scores, DLQ records by reason."""
        dlq = sum(reasons.values())
        self.totals.update(batches=1, messages=messages, scored=scored, dlq=dlq, flagged=flagged)
        if dlq:
            self.dlq_reasons.update(reasons)
        self._changed = True

    def retry(self) -> None:
        self.totals.update(retries=1)
        self._changed = True

    def fields(self) -> dict[str, object]:
        """The totals as log fields (`stream.stopping` and `stream.stopped` carry them too)."""
        return {**self.totals, "dlq_reasons": dict(self.dlq_reasons)}

    def maybe_log(self, **extra: object) -> bool:
        """Log `stream.progress` if something changed since the last line and the interval
        passed; True if logged."""
        if not self._changed:
            return False
        now = self.clock()
        elapsed = now - self._logged_at
        if elapsed < self.interval_seconds:
            return False
        messages = self.totals["messages"]
        rate = (messages - self._logged_messages) / elapsed if elapsed > 0 else None
        log.info("stream.progress", **self.fields(), **extra,
                 messages_per_s=None if rate is None else round(rate, 1), interval_s=round(elapsed, 3))
        self._logged_at, self._logged_messages, self._changed = now, messages, False
        return True
