"""The stream scorer's release: the model layer's release watcher
(`cardscore.model.served_release`, one definition shared with the scoring API), configured for
the stream: its per-arm metrics on the scorer's registry as `cardscore_stream_release_*`
(dashboard and alert rules name them), `stream.*` log events, and "stream scorer" as the
process an automatic abort names. The names below stay importable from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cardscore.features.feature_sets import SNAPSHOT_V1, FeatureSet
from cardscore.model import served_release
from cardscore.model.served_release import (
    CanaryGuard,
    ServedRelease,
    release_columns,
    score_batch,
    served_layout,
)
from cardscore.model.watcher import ModelUnavailable, RegistryPollFailed

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from cardscore.core.config import Settings
    from cardscore.core.release import ReleaseView
    from cardscore.streaming.metrics import StreamMetrics

__all__ = ["STREAM_RELEASE_NAMESPACE", "CanaryGuard", "ModelUnavailable", "RegistryPollFailed", "ReleaseMetrics",
           "ReleaseWatcher", "ServedRelease", "release_columns", "score_batch", "served_layout"]

STREAM_RELEASE_NAMESPACE = "cardscore_stream_release"


class ReleaseMetrics(served_release.ReleaseMetrics):
    """The stream's per-arm instruments: `cardscore_stream_release_*`."""

    def __init__(self, registry: CollectorRegistry, namespace: str = STREAM_RELEASE_NAMESPACE) -> None:
        super().__init__(registry, namespace)


class ReleaseWatcher(served_release.ReleaseWatcher):
    """The shared watcher with the stream's metrics namespace, log prefix and abort reason."""

    def __init__(
        self,
        settings: Settings,
        poll_seconds: float,
        threads: int = 1,
        read: Callable[[Settings], ReleaseView] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: StreamMetrics | None = None,
        served: Sequence[FeatureSet] = (SNAPSHOT_V1,),
    ) -> None:
        super().__init__(settings, poll_seconds, threads, read, clock,
                         ReleaseMetrics(metrics.registry) if metrics is not None else None,
                         log_prefix="stream", scorer="stream scorer", served=served)
