"""Phase timing shared by the stages: seconds per named phase, and a progress callback."""

from __future__ import annotations

import time
from collections.abc import Callable

# progress(phase): a stage says which phase of its work starts (read, validate, gate, ...).
Progress = Callable[[str], None]


class PhaseTimer:
    """Seconds spent in each named phase; tells `progress` when a phase starts.

    Call it with the next phase's name; `finish()` closes the current phase and returns
    {phase: seconds}. A phase entered twice accumulates.
    """

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._current: str | None = None
        self._since = time.perf_counter()

    def __call__(self, phase: str) -> None:
        self._close()
        self._current = phase
        if self.progress:
            self.progress(phase)

    def _close(self) -> None:
        now = time.perf_counter()
        if self._current is not None:
            self.seconds[self._current] = round(self.seconds.get(self._current, 0.0) + now - self._since, 3)
        self._since = now

    def finish(self) -> dict[str, float]:
        self._close()
        self._current = None
        return self.seconds
