"""Prometheus metrics of the scoring API (`/metrics`), all named `cardscore_serve_*`; the
release's per-arm instruments (`cardscore.model.served_release.ReleaseMetrics`, the stream's
`cardscore_stream_release_*` ones) as `cardscore_serve_release_*`."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from cardscore.core.gc_tuning import gc_pause_histogram
from cardscore.core.prometheus import in_process_values
from cardscore.model.served_release import ReleaseMetrics
from cardscore.schemas.reasons import RejectReason
from cardscore.serving.scoring import STAGES

ENDPOINTS = ("/v1/score", "/healthz", "/readyz", "/metrics", "/openapi.json", "other")
DEPENDENCIES = ("online_store", "registry")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 1000, 10_000)
SERVE_RELEASE_NAMESPACE = "cardscore_serve_release"


@dataclass
class ServeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        ns, r = "cardscore_serve", self.registry
        with in_process_values():
            self.requests = Counter("requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                    namespace=ns, registry=r)
            self.latency = Histogram("request_latency_seconds", "Request received -> response built, by endpoint",
                                     ["endpoint"], buckets=_LATENCY_BUCKETS, namespace=ns, registry=r)
            self.stage_latency = Histogram(
                "stage_latency_seconds", "Per scoring request, by stage (validate, lookup, predict, explain, respond)",
                ["stage"], buckets=_LATENCY_BUCKETS, namespace=ns, registry=r)
            self.batch_size = Histogram("batch_size", "Transactions per scoring request", buckets=_BATCH_BUCKETS,
                                        namespace=ns, registry=r)
            self.scored = Counter("transactions_scored", "Transactions scored", namespace=ns, registry=r)
            self.rejected = Counter("transactions_rejected", "Transactions refused (422), by reason", ["reason"],
                                    namespace=ns, registry=r)
            self.unknown_entities = Counter("unknown_entities", "Scored rows with defaults for an unknown entity",
                                            ["entity"], namespace=ns, registry=r)
            self.model = Info("model", "The model version scoring now", namespace=ns, registry=r)
            self.model_version = Gauge("model_version", "Registered version scoring now", namespace=ns, registry=r)
            self.model_swaps = Counter("model_swaps", "Hot swaps of the model", namespace=ns, registry=r)
            self.ready = Gauge("ready", "1 when a model and the online features are loaded", namespace=ns, registry=r)
            self.dependency_up = Gauge("dependency_up", "1 when the last call to the dependency succeeded",
                                       ["dependency"], namespace=ns, registry=r)
            self.snapshot_age = Gauge("online_snapshot_age_seconds", "Age of the online features in memory "
                                      "(snapshot reader)", namespace=ns, registry=r)
            for endpoint in ENDPOINTS:
                self.latency.labels(endpoint)
            for stage in STAGES:
                self.stage_latency.labels(stage)
            for reason in RejectReason:
                self.rejected.labels(reason.value)
            for entity in ("customer", "terminal"):
                self.unknown_entities.labels(entity)
            for dependency in DEPENDENCIES:
                self.dependency_up.labels(dependency)
            self.gc_pause = gc_pause_histogram(ns, r, _LATENCY_BUCKETS)
            self.fallback = Gauge("fallback", "1 while the rule-based fallback serves every score (frozen, or "
                                  "no champion could be loaded)", namespace=ns, registry=r)
        # scores per arm, canary/shadow errors and predict time, breaches of the canary's criteria
        self.release = ReleaseMetrics(r, SERVE_RELEASE_NAMESPACE)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else found
