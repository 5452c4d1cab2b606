"""A long-running scorer's release: the champion and the release state (canary, shadow,
frozen), watched in the registry and swapped between batches (or requests), scored by the
same plan as the batch scorer (`cardscore.model.release.ServingPlan`: one definition of arms,
canary, shadow and the rule-based fallback, so a transaction gets the same score and arm from
every scorer). The stream scorer (`cardscore.streaming.release`) and the scoring API
(`cardscore.serving.state`) both hold a `ReleaseWatcher`; each names its own metrics
namespace (`cardscore_stream_release_*`, `cardscore_serve_release_*`), its log prefix and
the scorer named in an automatic abort's reason.

`ReleaseWatcher` has `ModelWatcher`'s interface (`due`, `refresh`, `current`); its `current`
is a `ServedRelease` whose `name`/`version` are the champion's (or the rules' when frozen) and
whose `score(matrix, card_ids)` scores a block. One registry call per poll
(`cardscore.core.release.read_view`); a block is scored by exactly one plan.

* No champion yet and not frozen: `ModelUnavailable` while nothing is served (the scorer waits,
  as before releases).
* Frozen: every score is the flagged fallback, within one poll.
* A champion that cannot be loaded: the fallback serves (flagged) when nothing else is loaded;
  a running scorer keeps its last champion (as `ModelWatcher` keeps an incompatible version out).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cardscore.core.logs import get_logger
from cardscore.core.registry import CHAMPION
from cardscore.features.feature_sets import SNAPSHOT_V1, FeatureSet, narrowest_layout
from cardscore.model.fallback import FALLBACK_MODEL_NAME, FALLBACK_VERSION
from cardscore.model.release import (
    ARM_CANARY,
    ARM_CHAMPION,
    ARM_FALLBACK,
    ReleaseScores,
    ServingModel,
    ServingPlan,
    build_plan,
)
from cardscore.model.watcher import ModelUnavailable, ModelWatcher, RegistryPollFailed

if TYPE_CHECKING:
    import xgboost as xgb
    from prometheus_client import CollectorRegistry

    from cardscore.core.config import Settings
    from cardscore.core.config.release import RollbackCriteria
    from cardscore.core.release import ReleaseView

log = get_logger("model.served_release")


@dataclass(frozen=True)
class ServedRelease:
    """What a scorer serves now: a plan, named by its champion (or the rules)."""

    plan: ServingPlan
    observe: Callable[[ReleaseScores], None] | None = None  # the watcher's guard and metrics

    @property
    def name(self) -> str:
        return FALLBACK_MODEL_NAME if self.plan.serves_fallback else self.plan.champion.name  # type: ignore[union-attr]

    @property
    def version(self) -> str:
        return FALLBACK_VERSION if self.plan.serves_fallback else self.plan.champion.version  # type: ignore[union-attr]

    def score(self, matrix: np.ndarray, card_ids: np.ndarray) -> ReleaseScores:
        scores = self.plan.score(matrix, card_ids)
        if self.observe is not None:
            self.observe(scores)
        return scores

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The served scores alone (without card ids every row is on the champion arm)."""
        return self.plan.score(matrix, np.zeros(len(matrix), dtype=np.int64)).score

    def booster(self, arm: str) -> xgb.Booster | None:
        """The booster that served the arm's rows (None for the fallback rules)."""
        if self.plan.serves_fallback or arm == ARM_FALLBACK:
            return None
        model = self.plan.canary if arm == ARM_CANARY else self.plan.champion
        return None if model is None else model.booster


class ReleaseWatcher:
    """Holds the served release; `refresh()` rebuilds it when the champion or the release
    state (its `generation`) changed in the registry. `metrics` (optional) counts scores per
    arm; `log_prefix` and `scorer` name the process in logs and in an abort's reason."""

    alias = CHAMPION  # the alias whose release it serves (as `ModelWatcher.alias`)

    def __init__(
        self,
        settings: Settings,
        poll_seconds: float,
        threads: int = 1,
        read: Callable[[Settings], ReleaseView] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: ReleaseMetrics | None = None,
        *,
        log_prefix: str = "stream",
        scorer: str = "stream scorer",
        served: Sequence[FeatureSet] = (SNAPSHOT_V1,),
    ) -> None:
        from cardscore.core import release

        self.settings = settings
        self.served = tuple(served)
        self.metrics = metrics
        self.guard = CanaryGuard(settings.release.criteria)
        self.poll_seconds = poll_seconds
        self.threads = threads
        self.log_prefix = log_prefix
        self.scorer = scorer
        self._read = read or release.read_view
        self._clock = clock
        self._checked_at: float | None = None
        self._key: tuple[str | None, int, bool] | None = None
        self.current: ServedRelease | None = None

    def due(self) -> bool:
        return self.current is None or self._checked_at is None or self._clock() - self._checked_at >= self.poll_seconds

    def refresh(self, force: bool = False) -> bool:
        """Read the release if due; True if what is served changed. Raises `ModelUnavailable`
        only while nothing is served, `RegistryPollFailed` when a poll fails (the scorer keeps
        serving what it has)."""
        if not (force or self.due()):
            return False
        self._judge_canary()
        try:
            view = self._read(self.settings)
        except Exception as exc:
            self._checked_at = self._clock()
            if self.current is None:
                raise ModelUnavailable(f"model registry unreachable: {exc}") from exc
            raise RegistryPollFailed(str(exc)) from exc
        self._checked_at = self._clock()
        if view.champion is None and not view.state.frozen:
            if self.current is None:
                raise ModelUnavailable(
                    f"model {view.model_name!r} has no champion yet in {self.settings.mlflow_registry_uri}")
            return False  # the alias was removed: keep serving
        key = (view.champion, view.state.generation, view.state.frozen)
        if key == self._key:
            return False
        previous = self.current.plan if self.current else None
        plan = build_plan(self.settings, view, previous=previous, threads=self.threads, served=self.served)
        if plan.champion is None and not plan.frozen and previous is not None and previous.champion is not None:
            # A new champion that cannot be served: keep the last one, do not retry this state.
            log.error(f"{self.log_prefix}.model_rejected", version=view.champion, keeping=previous.champion.version,
                      error=plan.errors.get("champion"))
            self._key = key
            return False
        self._key = key
        if view.state.canary_active and plan.errors.get("canary"):
            # The canary cannot be loaded here: every one of its cards would be served by the
            # champion, a 100% error rate. Abort it (the next read serves the plan without it).
            self._abort(str(view.state.canary), [f"canary cannot be loaded: {plan.errors['canary']}"])
        canary = plan.canary.version if plan.canary is not None and plan.share > 0 else None
        if canary != self.guard.version:
            self.guard.reset(canary)
        self.current = ServedRelease(plan, self._observe)
        log.info(f"{self.log_prefix}.release_loaded", serving=plan.describe(), generation=plan.generation,
                 errors=plan.errors or None)
        return True

    def _observe(self, scores: ReleaseScores) -> None:
        self.guard.record(scores)
        if self.metrics is not None:
            self.metrics.record(scores)

    def _judge_canary(self) -> None:
        """The continuous rollback check: a canary whose recent batches breach the error-rate or
        latency criterion is aborted on the registry (`release.auto_abort`); the read that
        follows serves the plan without it."""
        breached = self.guard.breaches()
        if not breached or self.guard.version is None:
            return
        version = self.guard.version
        self.guard.reset(version)  # judge afresh: one abort per breach, not one per poll
        self._abort(version, breached)

    def _abort(self, version: str, breached: list[str]) -> None:
        from cardscore.core import release

        reason = f"automatic rollback: {self.scorer}: {'; '.join(breached)}"
        log.error(f"{self.log_prefix}.release_breach", version=version, breaches=breached)
        if self.metrics is not None:
            self.metrics.breaches.inc()
        if not self.settings.release.auto_abort:
            return
        try:
            release.abort(self.settings, actor=self.settings.release.automation_actor, reason=reason,
                          only_version=version)
        except Exception as exc:  # the registry is away: the next breach tries again
            log.error(f"{self.log_prefix}.release_abort_failed", version=version,
                      error=f"{type(exc).__name__}: {exc}")


@dataclass
class CanaryGuard:
    """The canary's recent batches in this scorer: rows, rows its failed calls left out, and
    its predict seconds; `breaches()` judges them against `release.criteria` once
    `stream_min_batches` batches are in the window of `stream_window_batches` (a scoring API
    request is one batch). Recorded by the scoring thread(s), judged by the watcher's: a lock
    keeps the window whole."""

    criteria: RollbackCriteria
    version: str | None = None
    batches: deque[tuple[int, int, float]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reset(self, version: str | None) -> None:
        with self._lock:
            self.version = version
            self.batches = deque(maxlen=self.criteria.stream_window_batches)

    def record(self, scores: ReleaseScores) -> None:
        if self.version is None:
            return
        failed = scores.errors.get(ARM_CANARY, 0)
        served = int((scores.arm == ARM_CANARY).sum())
        if served + failed:
            if self.batches.maxlen is None:
                self.reset(self.version)
            with self._lock:
                self.batches.append((served + failed, failed, scores.seconds.get(ARM_CANARY, 0.0)))

    def breaches(self) -> list[str]:
        c = self.criteria
        with self._lock:
            batches = list(self.batches)
        if len(batches) < c.stream_min_batches:
            return []
        rows = sum(b[0] for b in batches)
        failed = sum(b[1] for b in batches)
        out = []
        if c.error_rate is not None and rows and failed / rows > c.error_rate:
            out.append(f"canary error rate {failed / rows:.4g} > {c.error_rate:g} over {len(batches)} batches")
        p99 = float(np.percentile([b[2] for b in batches], 99))
        if c.p99_latency_seconds is not None and p99 > c.p99_latency_seconds:
            out.append(f"canary predict p99 {p99:.4g}s > {c.p99_latency_seconds:g}s over {len(batches)} batches")
        return out


class ReleaseMetrics:
    """Per-arm instruments on a scorer's own registry (`/metrics`), named `<namespace>_*`:
    `scores_total{arm}`, `errors_total{role}`, `predict_seconds{role}`, `breaches_total`."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        from prometheus_client import Counter, Histogram

        from cardscore.core.prometheus import in_process_values

        ns = namespace
        with in_process_values():
            self.scores = Counter("scores", "Scores served, per release arm", ["arm"], namespace=ns, registry=registry)
            self.errors = Counter("errors", "Rows a failed canary/shadow call left to the champion, per role",
                                  ["role"], namespace=ns, registry=registry)
            self.predict = Histogram("predict_seconds", "Model call per micro-batch, per role", ["role"],
                                     buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
                                     namespace=ns, registry=registry)
            self.breaches = Counter("breaches", "Canary rollback criteria breached in this scorer",
                                    namespace=ns, registry=registry)
            for arm in (ARM_CHAMPION, ARM_CANARY, ARM_FALLBACK):
                self.scores.labels(arm)
            for role in (ARM_CANARY, "shadow"):
                self.errors.labels(role)

    def record(self, scores: ReleaseScores) -> None:
        for arm, n in scores.arm_counts().items():
            self.scores.labels(arm).inc(n)
        for role, n in scores.errors.items():
            self.errors.labels(role).inc(n)
        for role, seconds in scores.seconds.items():
            self.predict.labels(role).observe(seconds)


def served_layout(model: object) -> tuple[str, ...]:
    """The columns of the matrices `score_batch` takes for what the watcher serves: the plan's
    layout, or a plain model's (MODEL_FEATURES unless it reads fresh features)."""
    if isinstance(model, ServedRelease):
        return model.plan.layout
    return narrowest_layout(model.booster.feature_names or ())  # type: ignore[attr-defined]


def score_batch(model: object, matrix: np.ndarray, card_ids: np.ndarray) -> ReleaseScores:
    """The batch's scores by whatever the watcher serves: a `ServedRelease`, or a plain
    `LoadedModel` (a scorer on another alias than the champion: its version on every row).
    `matrix` is in `served_layout(model)`."""
    if isinstance(model, ServedRelease):
        return model.score(matrix, card_ids)
    served = ServingModel(model.name, model.version, model.booster)  # type: ignore[attr-defined]
    return ServingPlan(served).with_layout(served_layout(model)).score(matrix, card_ids)


def booster_of(model: object, arm: str) -> xgb.Booster | None:
    """The booster that scored an arm's rows: the release's (`ServedRelease.booster`), a plain
    model's own on every arm it serves; None for the fallback rules."""
    if isinstance(model, ServedRelease):
        return model.booster(arm)
    return None if arm == ARM_FALLBACK else model.booster  # type: ignore[attr-defined]


def release_columns(scores: ReleaseScores) -> dict[str, object]:
    """The score message's model and release fields (`ScoreColumns` keyword arguments): one
    value for the batch where every row has the same (the serialiser then formats it once)."""

    def one_or_all(values: np.ndarray) -> object:
        if len(values) and all(v == values[0] for v in values[1:]):
            return values[0]
        return values.tolist()

    shadow = scores.shadow_score
    return {
        "score": scores.score,
        "model_name": one_or_all(scores.model_name),
        "model_version": one_or_all(scores.model_version),
        "arm": one_or_all(scores.arm),
        "fallback": bool(scores.fallback[0]) if len(scores) and scores.fallback.all() == scores.fallback.any()
        else scores.fallback,
        "shadow_model_version": one_or_all(scores.shadow_model_version),
        "shadow_score": None if np.isnan(shadow).all() else shadow,
    }


def serving_watcher(
    settings: Settings,
    alias: str,
    poll_seconds: float,
    threads: int,
    *,
    metrics: ReleaseMetrics | None,
    log_prefix: str,
    scorer: str,
    served: Sequence[FeatureSet] = (SNAPSHOT_V1,),
) -> ModelWatcher | ReleaseWatcher:
    """What a scorer serves for `alias`: the champion alias serves the release (canary, shadow,
    freeze), any other alias (a side scorer) that alias's version alone. One rule for the stream
    scorer and the scoring API; `served`: the feature sets the scorer can build."""
    if alias == CHAMPION:
        return ReleaseWatcher(settings, poll_seconds, threads=threads, metrics=metrics,
                              log_prefix=log_prefix, scorer=scorer, served=served)
    return ModelWatcher(settings, alias, poll_seconds, threads=threads, log_prefix=log_prefix, served=served)
