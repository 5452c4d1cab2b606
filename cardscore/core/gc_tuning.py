"""Garbage-collector settings for the long-running scorers, applied once warmed up.

A scorer process holds a large, long-lived heap (Feast, MLflow, pandas, the model) that every
full collection walks again: measured, 150-230 ms pauses that set the stream's p99. Once the
process is warm, `freeze_after_warmup` collects once and moves every object alive to the
permanent generation (`gc.freeze`), so later collections scan only what batches and requests
allocate, and raises the youngest generation's threshold so they run less often. Reference
counting still frees nearly everything at once; the collector is only for cycles.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def freeze_after_warmup(young_threshold: int = YOUNG_THRESHOLD) -> dict[str, int]:
    """Collect, freeze what is alive, raise the young threshold; returns what was done."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    return {"frozen_objects": gc.get_freeze_count(), "young_threshold": young_threshold}
