"""The stream scorer's release: the champion and the release state (canary, shadow, frozen),
watched in the registry and swapped between batches, scored by the same plan as the batch
scorer (`cardscore.model.release.ServingPlan`: one definition of arms, canary, shadow and the
rule-based fallback, so a transaction gets the same score and arm from both).

`ReleaseWatcher` has `ModelWatcher`'s interface (`due`, `refresh`, `current`); its `current`
is a `ServedRelease` whose `name`/`version` are the champion's (or the rules' when frozen) and
whose `score(matrix, card_ids)` scores a batch. One registry call per poll
(`cardscore.core.release.read_view`); a batch is scored by exactly one plan.

* No champion yet and not frozen: `ModelUnavailable` while nothing is served (the scorer waits,
  as before releases).
* Frozen: every score is the flagged fallback, within one poll.
* A champion that cannot be loaded: the fallback serves (flagged) when nothing else is loaded;
  a running scorer keeps its last champion (as `ModelWatcher` keeps an incompatible version out).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cardscore.core.logs import get_logger
from cardscore.model.fallback import FALLBACK_MODEL_NAME, FALLBACK_VERSION
from cardscore.model.release import ReleaseScores, ServingPlan, build_plan
from cardscore.streaming.model import ModelUnavailable, RegistryPollFailed

if TYPE_CHECKING:
    from cardscore.core.config import Settings
    from cardscore.core.release import ReleaseView

log = get_logger("streaming.release")


@dataclass(frozen=True)
class ServedRelease:
    """What the stream serves now: a plan, named by its champion (or the rules)."""

    plan: ServingPlan

    @property
    def name(self) -> str:
        return FALLBACK_MODEL_NAME if self.plan.serves_fallback else self.plan.champion.name  # type: ignore[union-attr]

    @property
    def version(self) -> str:
        return FALLBACK_VERSION if self.plan.serves_fallback else self.plan.champion.version  # type: ignore[union-attr]

    def score(self, matrix: np.ndarray, card_ids: np.ndarray) -> ReleaseScores:
        return self.plan.score(matrix, card_ids)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The served scores alone (without card ids every row is on the champion arm)."""
        return self.plan.score(matrix, np.zeros(len(matrix), dtype=np.int64)).score


class ReleaseWatcher:
    """Holds the served release; `refresh()` rebuilds it when the champion or the release
    state (its `generation`) changed in the registry."""

    def __init__(
        self,
        settings: Settings,
        poll_seconds: float,
        threads: int = 1,
        read: Callable[[Settings], ReleaseView] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from cardscore.core import release

        self.settings = settings
        self.poll_seconds = poll_seconds
        self.threads = threads
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
        plan = build_plan(self.settings, view, previous=previous, threads=self.threads)
        if plan.champion is None and not plan.frozen and previous is not None and previous.champion is not None:
            # A new champion that cannot be served: keep the last one, do not retry this state.
            log.error("stream.model_rejected", version=view.champion, keeping=previous.champion.version,
                      error=plan.errors.get("champion"))
            self._key = key
            return False
        self._key = key
        self.current = ServedRelease(plan)
        log.info("stream.release_loaded", serving=plan.describe(), generation=plan.generation,
                 errors=plan.errors or None)
        return True


def score_batch(model: object, matrix: np.ndarray, card_ids: np.ndarray) -> ReleaseScores:
    """The batch's scores by whatever the watcher serves: a `ServedRelease`, or a plain
    `LoadedModel` (a scorer on another alias than the champion: its version on every row)."""
    if isinstance(model, ServedRelease):
        return model.score(matrix, card_ids)
    from cardscore.model.release import ServingModel

    served = ServingModel(model.name, model.version, model.booster)  # type: ignore[attr-defined]
    return ServingPlan(served).score(matrix, card_ids)


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
