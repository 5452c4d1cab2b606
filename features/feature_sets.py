"""The model input sets, declared once: which features a model reads, in which order.

A registered model records its feature names (`registry.TAG_FEATURE_NAMES`); every scorer
checks them against these sets before it serves the model (`cardscore.model.scoring.
check_model_features`). Training picks one with `training.feature_set`.

* `snapshot_v1`: the request-time features and the daily snapshots (`MODEL_FEATURES`), what
  every scorer serves.
* `snapshot_fresh_v1`: those, then the fresh (event-time) features
  (`features.fresh.FRESH_FEATURE_NAMES`). The batch scorer, training and monitoring serve
  them from `gold.fresh_features`; the stream scorer and the scoring API compute them online
  when their `fresh_features` setting is on (`features.fresh_online`), and refuse such a model
  otherwise: the release falls back to the champion arm / rules, as for any version they
  cannot load, with a message naming the set.

`SERVED_COLUMNS` is the widest layout a scorer builds, the union of the sets with
`MODEL_FEATURES` first: the fallback rules and every snapshot model read its leading columns.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cardscore.features.definitions import MODEL_FEATURES
from cardscore.features.fresh import FRESH_FEATURE_NAMES


@dataclass(frozen=True)
class FeatureSet:
    """A model input: a name and the ordered feature names."""

    name: str
    features: tuple[str, ...]
    description: str

    @property
    def uses_fresh(self) -> bool:
        """Whether its rows need `gold.fresh_features` (computed per transaction)."""
        return reads_fresh(self.features)


def reads_fresh(names: Sequence[str]) -> bool:
    """Whether any of `names` is a fresh feature (served from `gold.fresh_features`)."""
    return any(name in FRESH_FEATURE_NAMES for name in names)


SNAPSHOT_V1 = FeatureSet("snapshot_v1", MODEL_FEATURES, "request-time and daily snapshot features")
SNAPSHOT_FRESH_V1 = FeatureSet(
    "snapshot_fresh_v1", (*MODEL_FEATURES, *FRESH_FEATURE_NAMES),
    "request-time, daily snapshot and fresh (event-time) features",
)
FEATURE_SETS: dict[str, FeatureSet] = {s.name: s for s in (SNAPSHOT_V1, SNAPSHOT_FRESH_V1)}
SERVED_COLUMNS: tuple[str, ...] = SNAPSHOT_FRESH_V1.features


def narrowest_layout(names: Collection[str]) -> tuple[str, ...]:
    """The layout a scorer builds for models reading `names`: MODEL_FEATURES when they read
    nothing else (no fresh column is computed), else `SERVED_COLUMNS`."""
    return MODEL_FEATURES if set(names) <= set(MODEL_FEATURES) else SERVED_COLUMNS


def served_sets(fresh_features: bool) -> tuple[FeatureSet, ...]:
    """The sets a long-running scorer can build: the snapshot set, and the fresh one when it
    computes fresh features (`streaming.fresh_features`, `serving.fresh_features`)."""
    return (SNAPSHOT_V1, SNAPSHOT_FRESH_V1) if fresh_features else (SNAPSHOT_V1,)


def feature_set_named(name: str) -> FeatureSet:
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; declared: {sorted(FEATURE_SETS)}") from None


def feature_set_of(names: Sequence[str]) -> FeatureSet | None:
    """The declared set whose features are exactly `names`, in order; None otherwise."""
    wanted = tuple(names)
    return next((s for s in FEATURE_SETS.values() if s.features == wanted), None)


def column_indexes(names: Sequence[str], layout: Sequence[str]) -> tuple[int, ...] | None:
    """Where each of `names` sits in `layout`; None when `names` is the layout itself (no
    selection needed). Raises KeyError naming what the layout lacks."""
    names, layout = tuple(names), tuple(layout)
    if names == layout:
        return None
    position = {name: i for i, name in enumerate(layout)}
    missing = [n for n in names if n not in position]
    if missing:
        raise KeyError(f"the served columns lack {missing}")
    return tuple(position[n] for n in names)
