"""The scoring model: the registry alias's version, watched and swapped between batches.

Shared by the long-running scorers (the stream scorer, the scoring API). `ModelWatcher.refresh()`
is called before each batch (or request). It queries the registry at most every `poll_seconds`
(one `get_model_version_by_alias` call); when the alias has moved it loads the new version's
native booster (cached by version in `cardscore.core.registry`) and swaps. A batch is scored by
exactly one version, and each score names it. Log events carry the caller's prefix
(`stream.model_loaded`, `serve.model_loaded`, ...).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cardscore.core.logs import get_logger
from cardscore.features.feature_sets import SNAPSHOT_V1, FeatureSet
from cardscore.model.scoring import IncompatibleModel, check_model_features, predict_matrix

if TYPE_CHECKING:
    import xgboost as xgb

    from cardscore.core.config import Settings
    from cardscore.core.registry import ModelRef

log = get_logger("model.watcher")


class ModelUnavailable(RuntimeError):
    """No version is under the alias yet, or the registry cannot be reached."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    booster: xgb.Booster

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for a (rows x MODEL_FEATURES) float64 matrix: one native call."""
        return predict_matrix(self.booster, matrix)


def check_features(ref: ModelRef, booster: xgb.Booster, served: Sequence[FeatureSet] = (SNAPSHOT_V1,)) -> None:
    """A version that records its feature names must read one of the `served` sets, in order."""
    names = tuple(booster.feature_names or ref.feature_names or ())
    if names:
        check_model_features(names, f"{ref.name} v{ref.version}", served)


class ModelWatcher:
    """Holds the current model; `refresh()` swaps it when the registry alias moves."""

    def __init__(
        self,
        settings: Settings,
        alias: str,
        poll_seconds: float,
        threads: int = 1,
        find: Callable[[Settings, str], ModelRef | None] | None = None,
        load: Callable[[Settings, ModelRef], xgb.Booster] | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_prefix: str = "stream",
        served: Sequence[FeatureSet] = (SNAPSHOT_V1,),
    ) -> None:
        from cardscore.core import registry

        self.settings = settings
        self.alias = alias
        self.served = tuple(served)
        self.poll_seconds = poll_seconds
        self.threads = threads
        self._find = find or registry.find_alias
        self._load = load or registry.load_booster
        self._clock = clock
        self.log_prefix = log_prefix
        self._checked_at: float | None = None
        self.current: LoadedModel | None = None
        self.rejected_version: str | None = None  # an incompatible version, not retried

    def due(self) -> bool:
        return (
            self.current is None
            or self._checked_at is None
            or self._clock() - self._checked_at >= self.poll_seconds
        )

    def refresh(self, force: bool = False) -> bool:
        """Look the alias up if due; True if the model changed. Raises `ModelUnavailable`
        only while there is no model at all (a scorer keeps its model through registry outages)."""
        if not (force or self.due()):
            return False
        try:
            ref = self._find(self.settings, self.alias)
        except Exception as exc:
            if self.current is None:
                raise ModelUnavailable(f"model registry unreachable: {exc}") from exc
            self._checked_at = self._clock()
            raise RegistryPollFailed(str(exc)) from exc
        self._checked_at = self._clock()
        if ref is None:
            if self.current is None:
                raise ModelUnavailable(
                    f"model {self.settings.mlflow.model_name!r} has no {self.alias!r} version yet "
                    f"in {self.settings.mlflow_registry_uri}"
                )
            return False  # the alias was removed: keep scoring with the last version
        if self.current is not None and ref.version == self.current.version:
            return False
        if ref.version == self.rejected_version:
            return False
        booster = self._load(self.settings, ref)
        try:
            check_features(ref, booster, self.served)
        except IncompatibleModel:
            self.rejected_version = ref.version
            if self.current is None:
                raise
            log.error(f"{self.log_prefix}.model_rejected", model=ref.name, version=ref.version,
                      keeping=self.current.version)
            return False
        previous = self.current.version if self.current else None
        # A private copy: the registry's cached booster stays as loaded, ours gets its threads.
        own = booster.copy()
        own.set_param({"nthread": self.threads})
        self.current = LoadedModel(ref.name, ref.version, own)
        log.info(f"{self.log_prefix}.model_loaded", model=ref.name, version=ref.version, previous=previous,
                 alias=self.alias)
        return True


class RegistryPollFailed(RuntimeError):
    """A periodic alias lookup failed; the scorer keeps the current model and retries later."""


def publish_model(metrics: Any, model: LoadedModel | None) -> None:
    """The served model on a process's metrics (the stream scorer's and the scoring API's share
    these names): `model` info, `model_version` (MLflow versions are numbers; be lenient) and
    the registry marked up."""
    if model is None:
        return
    metrics.model.info({"name": model.name, "version": model.version})
    with contextlib.suppress(ValueError):
        metrics.model_version.set(float(model.version))
    metrics.dependency_up.labels("registry").set(1)
