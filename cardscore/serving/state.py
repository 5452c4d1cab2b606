"""What the scoring API holds between requests: the online feature reader and the model.

Both are loaded in a background thread (a request never waits for Feast's imports, the
registry or the online store): at start, then again with backoff while one is missing; once
loaded, the model is polled every `serving.model_poll_seconds` and a change swaps it (a
request reads the current model once, so it is scored by one plan). The process is ready
when both are loaded.

On the champion alias (the default) the model is the release
(`cardscore.model.served_release.ReleaseWatcher`, the stream scorer's watcher): champion,
canary share, shadow and freeze, read from the registry each poll; frozen, or a champion that
cannot be loaded, serves the flagged rule-based fallback and the process stays ready (it
answers, with `fallback: true` on every score). Another alias serves that version alone
(`ModelWatcher`). After the first time it is ready, the garbage
collector's start-up objects are frozen (`core.gc_tuning`), so collections scan only what
requests allocate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cardscore.core.gc_tuning import PauseRecorder, freeze_after_warmup
from cardscore.core.logs import get_logger
from cardscore.features.feature_sets import served_sets
from cardscore.features.fresh_online import open_fresh_online
from cardscore.model.served_release import ReleaseWatcher, ServedRelease, serving_watcher
from cardscore.model.watcher import ModelUnavailable, ModelWatcher, publish_model

if TYPE_CHECKING:
    from cardscore.core.config import Settings
    from cardscore.features.fresh_online import FreshOnlineFeatures
    from cardscore.features.online_reader import OnlineFeatureReader
    from cardscore.serving.metrics import ServeMetrics

log = get_logger("serving.state")


class ServingState:
    def __init__(
        self,
        settings: Settings,
        metrics: ServeMetrics,
        open_reader: Callable[[Settings], OnlineFeatureReader] | None = None,
        watcher: ModelWatcher | ReleaseWatcher | None = None,
    ) -> None:
        cfg = settings.serving
        self.settings = settings
        self.metrics = metrics
        self._open_reader = open_reader or _default_reader
        self.watcher = watcher or serving_watcher(
            settings, cfg.model_alias, cfg.model_poll_seconds, cfg.model_threads,
            metrics=metrics.release, log_prefix="serve", scorer="scoring API",
            served=served_sets(cfg.fresh_features))
        self.reader: OnlineFeatureReader | None = None
        # The fresh features' reader, when `serving.fresh_features` (loaded with the reader).
        self.fresh: FreshOnlineFeatures | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._frozen = False
        self.gc_pauses = PauseRecorder()  # into metrics.gc_pause, here and on every /metrics
        self.last_error: dict[str, str] = {}

    @property
    def ready(self) -> bool:
        return (self.reader is not None and self.watcher.current is not None
                and (self.fresh is not None or not self.settings.serving.fresh_features))

    def start(self) -> None:
        self.gc_pauses.start()
        self._thread = threading.Thread(target=self._maintain, name="serving-dependencies", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """True once ready (tests and the benchmark wait on this)."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            if time.monotonic() >= deadline:
                return False
            self._stop.wait(0.05)  # poll interval of the condition
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.gc_pauses.stop()
        if self.reader is not None:
            self.reader.close()

    # ------------------------------------------------------------------ background

    def _maintain(self) -> None:
        cfg = self.settings.serving
        delay = cfg.retry_initial_seconds
        while not self._stop.is_set():
            missing = self._load_missing()
            if self.ready:
                delay = cfg.retry_initial_seconds
                self._poll_model()
                if not self._frozen:
                    self._frozen = True
                    freeze_after_warmup()
            self._publish()
            self.gc_pauses.observe(self.metrics.gc_pause)
            wait = delay if missing else min(cfg.model_poll_seconds, 1.0)
            if missing:
                delay = min(delay * 2, cfg.retry_max_seconds)
            self._stop.wait(wait)

    def _load_missing(self) -> bool:
        """Try to load what is missing; True if something still is."""
        if self.reader is None:
            try:
                self.reader = self._open_reader(self.settings)
                self.last_error.pop("online_features", None)
                log.info("serve.online_features_loaded", **{k: v for k, v in self.reader.status().items()
                                                            if k in ("reader", "store", "rows")})
            except Exception as exc:
                self.last_error["online_features"] = str(exc)[:500]
                self.metrics.dependency_up.labels("online_store").set(0)
                log.warning("serve.online_features_unavailable", error=str(exc)[:500])
        if self.fresh is None and self.settings.serving.fresh_features:
            try:
                self.fresh = open_fresh_online(self.settings)
                self.last_error.pop("fresh_features", None)
                log.info("serve.fresh_features_loaded")
            except Exception as exc:
                self.last_error["fresh_features"] = str(exc)[:500]
                log.warning("serve.fresh_features_unavailable", error=str(exc)[:500])
        if self.watcher.current is None:
            try:
                self.watcher.refresh(force=True)
                self.last_error.pop("model", None)
                self._model_changed()
            except (ModelUnavailable, Exception) as exc:
                self.last_error["model"] = str(exc)[:500]
                self.metrics.dependency_up.labels("registry").set(0)
                log.warning("serve.model_unavailable", error=str(exc)[:500])
        return not self.ready

    def _poll_model(self) -> None:
        if not self.watcher.due():
            return
        try:
            swapped = self.watcher.refresh()
            self.metrics.dependency_up.labels("registry").set(1)
        except Exception as exc:  # keep scoring with the current version
            self.metrics.dependency_up.labels("registry").set(0)
            log.warning("serve.registry_poll_failed", error=str(exc)[:300],
                        keeping=self.watcher.current.version if self.watcher.current else None)
            return
        if swapped:
            self.metrics.model_swaps.inc()
            self._model_changed()

    def _model_changed(self) -> None:
        current = self.watcher.current
        publish_model(self.metrics, current)
        fallback = isinstance(current, ServedRelease) and current.plan.serves_fallback
        self.metrics.fallback.set(1 if fallback else 0)

    def _publish(self) -> None:
        self.metrics.ready.set(1 if self.ready else 0)
        if self.reader is not None:
            status = self.reader.status()
            self.metrics.dependency_up.labels("online_store").set(1 if status.get("store_up") else 0)
            if "snapshot_age_seconds" in status:
                self.metrics.snapshot_age.set(status["snapshot_age_seconds"])

    def readiness(self) -> dict[str, Any]:
        model = self.watcher.current
        return {
            "ready": self.ready,
            "model": None if model is None else {"name": model.name, "version": model.version,
                                                 "alias": self.watcher.alias},
            **({"release": _release(model)} if isinstance(model, ServedRelease) else {}),
            "online_features": None if self.reader is None else self.reader.status(),
            **({"errors": dict(self.last_error)} if self.last_error and not self.ready else {}),
        }


def _release(served: ServedRelease) -> dict[str, Any]:
    """What /readyz says of the release: what serves, whether the fallback does and why."""
    plan = served.plan
    return {"serving": plan.describe(), "fallback": plan.serves_fallback,
            "fallback_reason": plan.fallback_reason if plan.serves_fallback else None,
            "frozen": plan.frozen, "generation": plan.generation, "versions": plan.versions(),
            "canary_share": plan.share, **({"errors": dict(plan.errors)} if plan.errors else {})}


def _default_reader(settings: Settings) -> OnlineFeatureReader:
    from cardscore.features.online_reader import open_reader

    return open_reader(settings)
