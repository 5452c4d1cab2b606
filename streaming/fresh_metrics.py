"""Prometheus metrics of a fresh-stream step (`cardscore fresh-stream ... --metrics-port N`).

Every name starts with `cardscore_fresh_`, labelled by `step` (card, terminal). The one that
says whether the features are fresh: `visible_seconds`, from an event's message timestamp (the
producer's clock when the transaction or report was sent; for the terminal step the original
message's, carried by the forward) to the moment the entity events that include it are written
to the online store. A scorer reads them from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from cardscore.streaming.metrics import in_process_values

VISIBLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class FreshMetrics:
    step: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r, ns = self.registry, "cardscore_fresh"
        with in_process_values():
            self.visible = Histogram("visible_seconds", "Message timestamp -> its entity events written to the store",
                                     ["step"], buckets=VISIBLE_BUCKETS, namespace=ns, registry=r).labels(self.step)
            self.batch = Histogram("batch_seconds", "One micro-batch: process, forward (acknowledged), write, commit",
                                   ["step"], buckets=BATCH_BUCKETS, namespace=ns, registry=r).labels(self.step)
            self.messages = Counter("messages", "Messages consumed (replayed ones included)", ["step"],
                                    namespace=ns, registry=r).labels(self.step)
            self.rejected = Counter("rejected", "Invalid messages skipped", ["step", "reason"], namespace=ns, registry=r)
            self.rows = Counter("rows_written", "Entity rows written to the online store", ["step"],
                                namespace=ns, registry=r).labels(self.step)
            self.as_of = Gauge("as_of_seconds", "The newest event or report time processed (UTC epoch seconds)",
                               ["step"], namespace=ns, registry=r).labels(self.step)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
