"""Garbage-collector settings for the long-running scorers, applied once warmed up.

A scorer process holds a large, long-lived heap (Feast, MLflow, pandas, the model) that every
full collection walks again: measured, 150-230 ms pauses that set the stream's p99. Once the
process is warm, `freeze_after_warmup` collects once and moves every object alive to the
permanent generation (`gc.freeze`), so later collections scan only what batches and requests
allocate, and raises the youngest generation's threshold so they run less often. Reference
counting still frees nearly everything at once; the collector is only for cycles, so a hot
path should create none (measured: one reference cycle per micro-batch kept every batch's
messages alive until the next young collection, 30-66 ms pauses every second at 2,000
events/s). `PauseRecorder` times every collection for the services' gc_pause_seconds metric.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Histogram

# Allocations between young collections (CPython's default: 700). Once the start-up heap is
# frozen and the hot path makes no reference cycles, a young collection only frees what a
# library left (xgboost 3.2 builds a class per prediction, dmlc/xgboost#12344), and its pause
# grows with the garbage since the last one. Measured on Kafka at 2,000 events/s (p99, the
# second of two runs each): 700 -> 16 ms, 2,000 -> 14 ms, 5,000 -> 24 ms; 50,000 gave ~30 ms
# pauses every second.
YOUNG_THRESHOLD = 2_000


def freeze_after_warmup(young_threshold: int = YOUNG_THRESHOLD) -> dict[str, int]:
    """Collect, freeze what is alive, raise the young threshold; returns what was done."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    return {"frozen_objects": gc.get_freeze_count(), "young_threshold": young_threshold}


class PauseRecorder:
    """Times every garbage collection of the process (`gc.callbacks`) while started.

    The callback only appends to a deque: it runs wherever a collection starts, possibly inside
    a metric's non-reentrant lock, so the owner moves the pauses to its histogram with `drain()`
    from its own loop."""

    def __init__(self, keep: int = 10_000) -> None:
        self._started_at = 0.0
        self._pauses: deque[tuple[int, float]] = deque(maxlen=keep)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
        else:
            self._pauses.append((info["generation"], time.perf_counter() - self._started_at))

    def start(self) -> PauseRecorder:
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)
        return self

    def stop(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def observe(self, histogram: Histogram) -> None:
        """Move the pauses recorded since the last call into a `gc_pause_histogram`."""
        for generation, seconds in self.drain():
            histogram.labels(str(generation)).observe(seconds)

    def drain(self) -> list[tuple[int, float]]:
        """The (generation, seconds) of the collections since the last drain, oldest first."""
        out = []
        while self._pauses:
            out.append(self._pauses.popleft())
        return out


def gc_pause_histogram(namespace: str, registry: CollectorRegistry, buckets: Sequence[float]) -> Histogram:
    """A service's `<namespace>_gc_pause_seconds{generation}`, every generation exported from the start."""
    histogram = Histogram(
        "gc_pause_seconds", "Garbage-collector pauses of the process, by generation (2: full)",
        ["generation"], buckets=buckets, namespace=namespace, registry=registry,
    )
    for generation in range(3):
        histogram.labels(str(generation))
    return histogram
