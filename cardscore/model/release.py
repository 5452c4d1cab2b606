"""How every scorer (batch, stream, API) serves a release: sticky arms by card, the canary,
the shadow, and the rule-based fallback. One function assigns arms (`card_buckets`) and one
scores a block of transactions (`ServingPlan.score`), whatever the scorer.

* **Arms.** A card's bucket is a 64-bit mix (splitmix64's finaliser) of its id XOR a key derived
  from the release's salt (BLAKE2b of the text), mapped to [0, 100) in steps of 0.01. A card is
  in the canary arm when its bucket is below the canary's share: sticky (the same card always
  lands in the same bucket, in every process), and a ramp 5 -> 25 -> 100 only adds cards. Each
  canary version has its own salt, so not always the same cards try new models first.
* **Scores.** The champion scores every row (served on the champion arm; on the canary arm it
  is the counterfactual recorded in the shadow columns); the canary scores its arm; a shadow
  version scores the champion arm (recorded in `shadow_score`, never acted on). So every card
  has the champion's and the candidate's score when the shadow is the canary's version, and the
  comparison report measures agreement on the same transactions.
* **Fallback.** Frozen, or no champion could be loaded: every row gets the rules' score
  (`cardscore.model.fallback`), arm `fallback`, flagged. A canary or shadow that cannot be
  loaded is left out (its arm is served by the champion) and counted as an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cardscore.core.logs import get_logger
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.features.feature_sets import (
    SNAPSHOT_V1,
    FeatureSet,
    column_indexes,
    narrowest_layout,
)
from cardscore.model.fallback import FALLBACK_MODEL_NAME, FALLBACK_VERSION, fallback_scores
from cardscore.model.scoring import (
    booster_bytes,
    check_model_features,
    load_booster_bytes,
    predict_matrix,
)

if TYPE_CHECKING:
    import xgboost as xgb

    from cardscore.core.config import Settings
    from cardscore.core.config.release import FallbackRules
    from cardscore.core.registry import ModelRef
    from cardscore.core.release import ReleaseView

ARM_CHAMPION = "champion"
ARM_CANARY = "canary"
ARM_FALLBACK = "fallback"
ARMS = (ARM_CHAMPION, ARM_CANARY, ARM_FALLBACK)
BUCKETS = 10_000  # a bucket is 0.01 % of the cards

log = get_logger("cardscore.model.release")

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def salt_key(salt: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(salt.encode("utf-8"), digest_size=8).digest(), "little"))


def card_buckets(card_ids: Any, salt: str) -> np.ndarray:
    """Each card's bucket in [0, 100) (float64, steps of 0.01): the one arm assignment of every
    scorer. `card_ids` are the customer (card) ids, any integer array-like."""
    x = np.asarray(card_ids, dtype=np.int64).astype(np.uint64) ^ salt_key(salt)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(BUCKETS)).astype(np.float64) / (BUCKETS / 100)


def in_canary(card_ids: Any, salt: str, share: float) -> np.ndarray:
    """Whether each card is in a canary serving `share` % of the cards."""
    if share <= 0:
        return np.zeros(len(np.asarray(card_ids)), dtype=bool)
    return card_buckets(card_ids, salt) < share


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ServingModel:
    """A registered version's booster, as one scorer holds it. `columns` picks the booster's
    features out of the plan's layout (None: the layout is exactly its features)."""

    name: str
    version: str
    booster: xgb.Booster
    columns: tuple[int, ...] | None = None

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return predict_matrix(self.booster, matrix if self.columns is None else matrix[:, self.columns])

    def in_layout(self, layout: Sequence[str]) -> ServingModel:
        """The same booster reading its features from `layout`."""
        names = self.booster.feature_names
        return replace(self, columns=column_indexes(names, layout) if names else None)


@dataclass(frozen=True)
class ReleaseScores:
    """A block's scores, one entry per row. `shadow_score` is NaN where no shadow scored."""

    score: np.ndarray
    arm: np.ndarray  # object: ARMS
    model_name: np.ndarray  # object
    model_version: np.ndarray  # object
    fallback: np.ndarray  # bool
    shadow_score: np.ndarray  # float64, NaN: none
    shadow_model_version: np.ndarray  # object, None: none
    seconds: dict[str, float] = field(default_factory=dict)  # predict time per role
    errors: dict[str, int] = field(default_factory=dict)  # role -> rows its failed call left out

    def __len__(self) -> int:
        return len(self.score)

    def arm_counts(self) -> dict[str, int]:
        if len(self.arm) and (self.arm == self.arm[0]).all():  # the usual batch: one arm
            return {str(self.arm[0]): len(self.arm)}
        names, counts = np.unique(self.arm.astype(str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}


@dataclass(frozen=True)
class ServingPlan:
    """What a scorer serves now: the champion, the canary and its share, the shadow, frozen.

    `fallback_reason` is set when the rules serve (frozen, or no champion could be loaded);
    `errors` names the versions that could not be loaded and were left out. `layout` names the
    columns of the matrices `score` takes (`MODEL_FEATURES` first: the fallback rules read
    them; each model picks its own features out of it)."""

    champion: ServingModel | None
    canary: ServingModel | None = None
    share: float = 0.0
    salt: str = ""
    shadow: ServingModel | None = None
    frozen: bool = False
    generation: int = 0
    rules: FallbackRules | None = None
    fallback_reason: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    layout: tuple[str, ...] = MODEL_FEATURES

    @property
    def serves_fallback(self) -> bool:
        return self.frozen or self.champion is None

    def models(self) -> list[ServingModel]:
        return [m for m in (self.champion, self.canary, self.shadow) if m is not None]

    def feature_names(self) -> set[str]:
        """Every feature some model of the plan reads (the fallback's when it serves)."""
        names = {n for m in self.models() for n in (m.booster.feature_names or ())}
        return names | set(MODEL_FEATURES) if self.serves_fallback or not names else names

    def with_layout(self, layout: Sequence[str]) -> ServingPlan:
        """The plan scoring matrices of `layout` (which must start with MODEL_FEATURES)."""
        layout = tuple(layout)
        if layout[:len(MODEL_FEATURES)] != MODEL_FEATURES:
            raise ValueError("a plan's layout starts with MODEL_FEATURES (the fallback rules read them)")

        def moved(m: ServingModel | None) -> ServingModel | None:
            return None if m is None else m.in_layout(layout)

        return replace(self, champion=moved(self.champion), canary=moved(self.canary), shadow=moved(self.shadow),
                       layout=layout)

    def versions(self) -> dict[str, str | None]:
        """Role -> version, for logs and metrics."""
        return {
            "champion": self.champion.version if self.champion else None,
            "canary": self.canary.version if self.canary and self.share > 0 else None,
            "shadow": self.shadow.version if self.shadow else None,
            "fallback": FALLBACK_VERSION if self.serves_fallback else None,
        }

    def describe(self) -> str:
        if self.serves_fallback:
            return f"fallback rules {FALLBACK_VERSION} ({self.fallback_reason or 'frozen'})"
        parts = [f"champion v{self.champion.version}"] if self.champion else []
        if self.canary and self.share > 0:
            parts.append(f"canary v{self.canary.version} on {self.share:g}%")
        if self.shadow:
            parts.append(f"shadow v{self.shadow.version}")
        return ", ".join(parts)

    def score(self, matrix: np.ndarray, card_ids: Any, clock: Callable[[], float] | None = None) -> ReleaseScores:
        """Scores of a (rows x `layout`) float64 matrix whose rows belong to `card_ids`."""
        import time

        clock = clock or time.perf_counter
        rows = len(matrix)
        seconds: dict[str, float] = {}
        arm = np.full(rows, ARM_CHAMPION, dtype=object)
        names = np.full(rows, None, dtype=object)
        versions = np.full(rows, None, dtype=object)
        shadow_score = np.full(rows, np.nan, dtype=np.float64)
        shadow_version = np.full(rows, None, dtype=object)
        if self.serves_fallback:
            assert self.rules is not None, "a plan that can fall back needs the rules"
            t0 = clock()
            score = fallback_scores(matrix, self.rules)
            seconds[ARM_FALLBACK] = clock() - t0
            arm[:] = ARM_FALLBACK
            names[:] = FALLBACK_MODEL_NAME
            versions[:] = FALLBACK_VERSION
            return ReleaseScores(score, arm, names, versions, np.ones(rows, dtype=bool), shadow_score,
                                 shadow_version, seconds)
        champion = self.champion
        assert champion is not None
        t0 = clock()
        score = champion.predict(matrix)
        seconds[ARM_CHAMPION] = clock() - t0
        names[:] = champion.name
        versions[:] = champion.version
        errors: dict[str, int] = {}

        def attempt(role: str, model: ServingModel, rows_of: np.ndarray | None) -> np.ndarray | None:
            """The model's scores of the rows (all when None); None when its call failed: the
            rows are then served by the champion (canary) or left unrecorded (shadow)."""
            t0 = clock()
            try:
                out = model.predict(matrix if rows_of is None else matrix[rows_of])
            except Exception as exc:  # a bad candidate must never stop the champion serving
                errors[role] = errors.get(role, 0) + (rows if rows_of is None else int(rows_of.sum()))
                log.error("release.predict_failed", role=role, version=model.version,
                          error=f"{type(exc).__name__}: {str(exc)[:300]}")
                return None
            finally:
                seconds[role] = seconds.get(role, 0.0) + clock() - t0
            return out

        canary = np.zeros(rows, dtype=bool)
        candidate_everywhere = None
        if self.canary is not None and self.share > 0 and rows:
            canary = in_canary(card_ids, self.salt, self.share)
            if self.shadow is not None and self.shadow.version == self.canary.version:
                # The usual release shadows and canaries the same version: one call on every
                # row (served on the canary arm, recorded on the champion arm), not two on parts.
                candidate_everywhere = attempt(ARM_CANARY, self.canary, None)
                canary_scores = None if candidate_everywhere is None else candidate_everywhere[canary]
                if candidate_everywhere is None:
                    errors[ARM_CANARY] = int(canary.sum())  # the canary's rows, not the batch
            elif canary.any():
                canary_scores = attempt(ARM_CANARY, self.canary, canary)
            else:
                canary_scores = None
            if canary_scores is None:
                canary = np.zeros(rows, dtype=bool)  # served by the champion
            else:
                shadow_score[canary] = score[canary]  # the champion's counterfactual
                shadow_version[canary] = champion.version
                score = score.copy()
                score[canary] = canary_scores
                arm[canary] = ARM_CANARY
                names[canary] = self.canary.name
                versions[canary] = self.canary.version
        if self.shadow is not None and rows:
            rest = ~canary
            if rest.any():
                if candidate_everywhere is not None:
                    recorded = candidate_everywhere[rest]
                elif self.canary is not None and self.share > 0 and self.shadow.version == self.canary.version:
                    recorded = None  # its one call failed above
                else:
                    recorded = attempt("shadow", self.shadow, rest)
                if recorded is not None:
                    shadow_score[rest] = recorded
                    shadow_version[rest] = self.shadow.version
        return ReleaseScores(score, arm, names, versions, np.zeros(rows, dtype=bool), shadow_score,
                             shadow_version, seconds, errors)

    # ------------------------------------------------------------------ shipping

    def portable(self) -> PortablePlan:
        """The plan as bytes and plain values: what an engine task rebuilds it from."""
        def raw(m: ServingModel | None) -> tuple[str, str, bytes] | None:
            return None if m is None else (m.name, m.version, booster_bytes(m.booster))

        return PortablePlan(raw(self.champion), raw(self.canary), self.share, self.salt, raw(self.shadow),
                            self.frozen, self.generation,
                            self.rules.model_dump() if self.rules is not None else None,
                            self.fallback_reason, dict(self.errors), self.layout)


@dataclass(frozen=True)
class PortablePlan:
    """A `ServingPlan` with boosters as UBJSON bytes (picklable; shipped to engine tasks)."""

    champion: tuple[str, str, bytes] | None
    canary: tuple[str, str, bytes] | None
    share: float
    salt: str
    shadow: tuple[str, str, bytes] | None
    frozen: bool
    generation: int
    rules: dict[str, Any] | None
    fallback_reason: str | None
    errors: dict[str, str]
    layout: tuple[str, ...] = MODEL_FEATURES

    def plan(self, threads: int = 0) -> ServingPlan:
        from cardscore.core.config.release import FallbackRules

        def model(raw: tuple[str, str, bytes] | None) -> ServingModel | None:
            return None if raw is None else ServingModel(raw[0], raw[1], load_booster_bytes(raw[2], threads))

        return ServingPlan(model(self.champion), model(self.canary), self.share, self.salt, model(self.shadow),
                           self.frozen, self.generation,
                           FallbackRules(**self.rules) if self.rules is not None else None,
                           self.fallback_reason, dict(self.errors)).with_layout(self.layout)


# ---------------------------------------------------------------------------- loading


def load_model(settings: Settings, ref: ModelRef, load: Callable[[Settings, ModelRef], xgb.Booster] | None = None,
               threads: int | None = None, served: Sequence[FeatureSet] = (SNAPSHOT_V1,)) -> ServingModel:
    """A version's booster (cached by version in the registry module), checked to read one of
    the `served` feature sets; a private copy when `threads` is given (the cached one stays as
    loaded). It reads MODEL_FEATURES matrices until the plan's `with_layout` says otherwise."""
    from cardscore.core import registry

    booster = (load or registry.load_booster)(settings, ref)
    names = tuple(booster.feature_names or ref.feature_names or ())
    if names:
        check_model_features(names, f"{ref.name} v{ref.version}", served)
    if threads is not None:
        booster = booster.copy()
        booster.set_param({"nthread": threads})
    return ServingModel(ref.name, ref.version, booster)


def build_plan(
    settings: Settings,
    view: ReleaseView,
    *,
    previous: ServingPlan | None = None,
    threads: int | None = None,
    load: Callable[[Settings, ModelRef], xgb.Booster] | None = None,
    get_version: Callable[[Settings, str], ModelRef] | None = None,
    served: Sequence[FeatureSet] = (SNAPSHOT_V1,),
) -> ServingPlan:
    """The plan for a release view: each version loaded (or reused from `previous`); a version
    that cannot be loaded, or that reads a feature set not in `served`, is left out and named
    in `errors`; no champion -> the fallback. Its layout is MODEL_FEATURES (`with_layout`)."""
    from cardscore.core import registry

    get_version = get_version or registry.get_version
    reuse = {}
    if previous is not None:
        for m in (previous.champion, previous.canary, previous.shadow):
            if m is not None:
                reuse[m.version] = m
    errors: dict[str, str] = {}
    loaded: dict[str, ServingModel] = {}

    def model(version: str | None, role: str) -> ServingModel | None:
        if version is None:
            return None
        if version in loaded:
            return loaded[version]
        if version in reuse:
            loaded[version] = reuse[version]
            return reuse[version]
        try:
            model_ = load_model(settings, get_version(settings, version), load, threads, served)
        except Exception as exc:  # incompatible, missing, unreadable: left out, the rest serves
            errors[role] = f"v{version}: {type(exc).__name__}: {str(exc)[:400]}"
            log.error("release.model_unavailable", role=role, version=version, error=errors[role])
            return None
        loaded[version] = model_
        return model_

    state = view.state
    champion = model(view.champion, ARM_CHAMPION)
    canary = model(state.canary, ARM_CANARY) if state.canary_active else None
    shadow = model(state.shadow, "shadow")
    reason = None
    if state.frozen:
        reason = "frozen"
    elif champion is None:
        reason = (f"champion unavailable ({errors[ARM_CHAMPION]})" if ARM_CHAMPION in errors
                  else f"model {view.model_name!r} has no champion")
    plan = ServingPlan(champion, canary, state.share if canary else 0.0, state.salt or (state.canary or ""),
                       shadow, state.frozen, state.generation, settings.release.fallback, reason, errors)
    # The narrowest layout its models read: a scorer builds fresh columns only when needed.
    return plan.with_layout(narrowest_layout(plan.feature_names()))


def fallback_plan(settings: Settings, reason: str, generation: int = -1) -> ServingPlan:
    """The rules alone (the registry itself could not be read and nothing is loaded)."""
    return ServingPlan(None, rules=settings.release.fallback, fallback_reason=reason, generation=generation)
