"""The stream scorer's continuous canary check on hand-made batches (fast tier)."""

from __future__ import annotations

import numpy as np

from cardscore.core.config.release import RollbackCriteria
from cardscore.model.release import ReleaseScores
from cardscore.streaming.release import CanaryGuard


def _batch(canary_rows: int, failed: int, seconds: float) -> ReleaseScores:
    arm = np.array(["canary"] * canary_rows + ["champion"] * (100 - canary_rows), dtype=object)
    empty = np.zeros(100)
    return ReleaseScores(empty, arm, arm, arm, empty.astype(bool), empty, arm, {"canary": seconds},
                         {"canary": failed} if failed else {})


def test_the_guard_judges_error_rate_and_latency_once_it_has_enough_batches() -> None:
    guard = CanaryGuard(RollbackCriteria(error_rate=0.01, p99_latency_seconds=0.25, stream_min_batches=20,
                                         stream_window_batches=50))
    guard.reset("7")
    for _ in range(19):
        guard.record(_batch(10, 0, 0.001))
    assert guard.breaches() == []
    guard.record(_batch(10, 0, 0.001))
    assert guard.breaches() == []  # 20 clean batches
    for _ in range(5):  # failed calls: their rows were served by the champion
        guard.record(_batch(0, 10, 0.001))
    (breach,) = guard.breaches()
    assert breach.startswith("canary error rate 0.2 > 0.01")
    guard.reset("7")
    for _ in range(20):
        guard.record(_batch(10, 0, 0.5))
    assert any("predict p99 0.5s > 0.25s" in b for b in guard.breaches())
    guard.reset(None)
    guard.record(_batch(10, 10, 9.0))  # no canary: nothing is judged
    assert guard.breaches() == []
