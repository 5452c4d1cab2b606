"""Prometheus metrics of the stream scorer, on a registry of its own (`/metrics`).

Every name starts with `cardscore_stream_`. Latencies are seconds. End-to-end latency is
measured twice because replays carry historical event times:
`clock="event_time"` (transaction time -> score acknowledged) and `clock="kafka_timestamp"`
(message timestamp -> score acknowledged).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
    values,
)
from prometheus_client.core import HistogramMetricFamily

from cardscore.core.gc_tuning import gc_pause_histogram
from cardscore.schemas.reasons import RejectReason

STAGES = ("lookup", "delivery", "commit", "registry", "consume")
# Where a batch's time goes, in order (stage_latency_seconds): taking it from the consumer,
# validating it, reading its features, the model call, serialising and handing the scores to
# the producer (after waiting, if it must, for room in the uncommitted window), waiting for the
# broker's acknowledgements, committing the offsets.
PIPELINE_STAGES = ("consume", "validate", "lookup", "predict", "room", "produce", "ack", "commit")
DEPENDENCIES = ("broker", "online_store", "registry")
# The entities of the fresh features' lag and missing rows (`StreamScorer._observe_fresh`).
FRESH_ENTITIES = ("card", "terminal")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Stages take microseconds to milliseconds: finer buckets at the low end.
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0)
# Replayed days are hours to years old: the event-time clock needs buckets up to years.
_E2E_BUCKETS = (*_LATENCY_BUCKETS, 300.0, 3600.0, 86_400.0, 30 * 86_400.0, 365 * 86_400.0, 3650 * 86_400.0)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)


@dataclass
class StreamMetrics:
    """The scorer's instruments; `registry` is what `/metrics` serves."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        with _in_process_values():
            self._create()
            # Every label value known up front: exported as 0 from the start, and created
            # while in-process values are in force (see `_in_process_values`).
            for reason in RejectReason:
                self.dlq.labels(reason.value)
            for stage in STAGES:
                self.errors.labels(stage)
                self.retries.labels(stage)
            for dependency in DEPENDENCIES:
                self.dependency_up.labels(dependency)
            for stage in PIPELINE_STAGES:
                self.stage_latency.labels(stage)
            for kind in ("assigned", "revoked", "lost"):
                self.rebalances.labels(kind)
            for entity in ("customer", "terminal"):
                self.unknown_entities.labels(entity)
            for entity in FRESH_ENTITIES:  # whether or not the scorer serves fresh features
                self.fresh_lag.initialise(entity)
                self.fresh_rows_missing.labels(entity)

    def _create(self) -> None:
        r = self.registry
        ns = "cardscore_stream"
        self.messages_in = Counter("messages_in", "Messages consumed", namespace=ns, registry=r)
        self.scores_out = Counter("scores_out", "Scores acknowledged by the broker", namespace=ns, registry=r)
        self.dlq = Counter("dlq_messages", "Messages sent to the DLQ", ["reason"], namespace=ns, registry=r)
        self.duplicate_conflicts = Counter(
            "duplicate_conflicts", "Messages whose transaction id was seen before with other content",
            namespace=ns, registry=r,
        )
        self.dlq_truncated = Counter(
            "dlq_truncated", "DLQ records cut to fit the DLQ topic's size limit", namespace=ns, registry=r
        )
        self.key_mismatches = Counter(
            "key_mismatches", "Valid messages whose key is not their customer_id", namespace=ns, registry=r
        )
        self.unknown_entities = Counter(
            "unknown_entities", "Scored rows with defaults for an unknown entity", ["entity"],
            namespace=ns, registry=r,
        )
        self.fresh_lag = BulkHistogram(
            f"{ns}_fresh_features_lag_seconds", "Per score with fresh features: the transaction's event time "
            "minus the as-of (the fresh-stream pipeline's event-time clock) of the stored row it read, by "
            "entity (0: the row was written after that time); rows never stored are fresh_rows_missing",
            _E2E_BUCKETS, ("entity",), r,
        )
        self.fresh_rows_missing = Counter(
            "fresh_rows_missing", "Scores with fresh features whose card or terminal had no stored row", ["entity"],
            namespace=ns, registry=r,
        )
        self.batch_size = Histogram(
            "batch_size", "Messages per micro-batch", buckets=_BATCH_BUCKETS, namespace=ns, registry=r
        )
        self.e2e_latency = BulkHistogram(
            f"{ns}_end_to_end_latency_seconds", "Transaction -> score acknowledged, per message",
            _E2E_BUCKETS, ("clock",), r,
        )
        self.batch_latency = Histogram(
            "batch_latency_seconds", "Consume -> offsets committed, per batch",
            buckets=_LATENCY_BUCKETS, namespace=ns, registry=r,
        )
        self.scoring_latency = Histogram(
            "scoring_latency_seconds", "Model predict per batch", buckets=_LATENCY_BUCKETS,
            namespace=ns, registry=r,
        )
        self.lookup_latency = Histogram(
            "online_lookup_latency_seconds", "Online feature lookup per batch", buckets=_LATENCY_BUCKETS,
            namespace=ns, registry=r,
        )
        self.delivery_latency = Histogram(
            "delivery_latency_seconds", "Produce -> broker acknowledgement per batch",
            buckets=_LATENCY_BUCKETS, namespace=ns, registry=r,
        )
        self.stage_latency = Histogram(
            "stage_latency_seconds", "Per batch, by stage: consume, validate, lookup, predict, room (waiting "
            "for room in the uncommitted window), produce, ack (produce -> every acknowledgement), commit",
            ["stage"], buckets=_STAGE_BUCKETS,
            namespace=ns, registry=r,
        )
        self.gc_pause = gc_pause_histogram(ns, r, _STAGE_BUCKETS)
        self.in_flight = Gauge(
            "in_flight_messages", "Scores and DLQ records produced, not yet acknowledged or committed",
            namespace=ns, registry=r,
        )
        self.model = Info("model", "The model version scoring now", namespace=ns, registry=r)
        self.model_version = Gauge("model_version", "Registered version scoring now", namespace=ns, registry=r)
        self.model_swaps = Counter("model_swaps", "Hot swaps of the model", namespace=ns, registry=r)
        self.assigned_partitions = Gauge(
            "assigned_partitions", "Partitions assigned to this process", namespace=ns, registry=r
        )
        self.consumer_lag = Gauge(
            "consumer_lag",
            "Per assigned partition: its high watermark minus the group's committed offset "
            "(messages not yet committed; from the log start when nothing is committed)",
            ["topic", "partition"], namespace=ns, registry=r,
        )
        self.rebalances = Counter(
            "rebalance_events", "Partitions assigned, revoked or lost", ["kind"], namespace=ns, registry=r
        )
        self.commits = Counter("commits", "Offset commits that succeeded", namespace=ns, registry=r)
        self.errors = Counter(
            "errors", "Failed attempts, by stage (lookup, delivery, commit, registry, consume)", ["stage"],
            namespace=ns, registry=r,
        )
        self.retries = Counter(
            "retries", "Batches rewound and retried after a failure, by stage", ["stage"],
            namespace=ns, registry=r,
        )
        self.dependency_up = Gauge(
            "dependency_up", "1 when the last call to the dependency succeeded", ["dependency"],
            namespace=ns, registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on host:port in a background thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (tests and the benchmark read metrics through this)."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else found


@contextmanager
def _in_process_values() -> Iterator[None]:
    """Create metrics with plain in-process values.

    Importing `feast.metrics` (Feast does it lazily, on its first online read) sets
    PROMETHEUS_MULTIPROC_DIR, and prometheus_client then keeps values of metrics created
    afterwards in shared mmap files, so two scorers in one process (tests, benchmarks) would
    count into each other. The scorer's metrics are its own: they always use in-process values.
    """
    saved = values.ValueClass
    values.ValueClass = values.MutexValue
    try:
        yield
    finally:
        values.ValueClass = saved


class BulkHistogram:
    """A labelled Prometheus histogram fed a whole batch at once (one numpy pass per batch
    instead of one locked `observe` per message on the hot path)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray([*buckets, math.inf], dtype=np.float64)
        self.labelnames = tuple(labelnames)
        self._counts: dict[tuple[str, ...], np.ndarray] = {}
        self._sums: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def initialise(self, *labels: str) -> None:
        """A series at zero before its first observation (a dashboard's rate() then reads 0,
        not "no data", and every panel's metric is on /metrics from the start)."""
        with self._lock:
            self._counts.setdefault(labels, np.zeros(len(self.bounds), dtype=np.int64))
            self._sums.setdefault(labels, 0.0)

    def observe_many(self, values: np.ndarray, *labels: str) -> None:
        values = np.asarray(values, dtype=np.float64)
        if not values.size:
            return
        # bucket i counts values <= bounds[i] (Prometheus `le`); cumulated when collected
        per_bucket = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds))
        with self._lock:
            counts = self._counts.setdefault(labels, np.zeros(len(self.bounds), dtype=np.int64))
            counts += per_bucket[: len(self.bounds)]
            self._sums[labels] = self._sums.get(labels, 0.0) + float(values.sum())

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            for labels, counts in self._counts.items():
                cumulative = np.cumsum(counts).tolist()
                buckets = [
                    ("+Inf" if math.isinf(b) else repr(float(b)), c)
                    for b, c in zip(self.bounds.tolist(), cumulative, strict=True)
                ]
                family.add_metric(list(labels), buckets, self._sums[labels])
        return [family]


in_process_values = _in_process_values  # for the other processes' registries (streaming.fresh_metrics)
