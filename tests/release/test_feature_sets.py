"""Feature sets in the serving plan (fast tier, no registry): a model reads one declared set;
a scorer serves the sets it can build and picks each model's columns out of one matrix."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from cardscore.core.config import load_settings
from cardscore.core.registry import ModelRef
from cardscore.core.release import ReleaseState, ReleaseView
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.features.feature_sets import (
    FEATURE_SETS,
    SERVED_COLUMNS,
    SNAPSHOT_FRESH_V1,
    SNAPSHOT_V1,
    column_indexes,
    feature_set_of,
)
from cardscore.features.fresh import FRESH_FEATURE_NAMES
from cardscore.model.release import ServingModel, ServingPlan, build_plan
from cardscore.model.scoring import IncompatibleModel, check_model_features, predict_matrix


def _booster(names: tuple[str, ...], seed: int) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.random((400, len(names))) * 100
    # The label depends on the LAST column, so a model that read the wrong column would show it.
    y = (x[:, -1] + rng.normal(scale=10, size=400) > 50).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(names))
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": seed, "nthread": 1},
                     data, num_boost_round=8)


@pytest.fixture(scope="module")
def boosters() -> dict[str, xgb.Booster]:
    return {"1": _booster(SNAPSHOT_V1.features, 1), "2": _booster(SNAPSHOT_FRESH_V1.features, 2)}


def test_the_declared_sets_start_with_the_snapshot_features_and_are_found_by_their_names() -> None:
    assert SNAPSHOT_V1.features == MODEL_FEATURES and not SNAPSHOT_V1.uses_fresh
    assert SNAPSHOT_FRESH_V1.features == (*MODEL_FEATURES, *FRESH_FEATURE_NAMES) and SNAPSHOT_FRESH_V1.uses_fresh
    assert SERVED_COLUMNS[:len(MODEL_FEATURES)] == MODEL_FEATURES
    assert all(set(s.features) <= set(SERVED_COLUMNS) for s in FEATURE_SETS.values())
    assert feature_set_of(list(SNAPSHOT_FRESH_V1.features)) is SNAPSHOT_FRESH_V1
    assert feature_set_of(list(reversed(MODEL_FEATURES))) is None
    assert column_indexes(MODEL_FEATURES, MODEL_FEATURES) is None
    assert column_indexes(FRESH_FEATURE_NAMES[:2], SERVED_COLUMNS) == (len(MODEL_FEATURES), len(MODEL_FEATURES) + 1)
    with pytest.raises(KeyError, match=FRESH_FEATURE_NAMES[0]):
        column_indexes(SNAPSHOT_FRESH_V1.features, MODEL_FEATURES)


def test_a_scorer_refuses_a_set_it_does_not_serve_and_says_which() -> None:
    assert check_model_features(MODEL_FEATURES, "m v1") is SNAPSHOT_V1
    with pytest.raises(IncompatibleModel, match=r"feature set snapshot_fresh_v1.*serves snapshot_v1"):
        check_model_features(SNAPSHOT_FRESH_V1.features, "m v2")
    assert check_model_features(SNAPSHOT_FRESH_V1.features, "m v2", tuple(FEATURE_SETS.values())) is SNAPSHOT_FRESH_V1
    with pytest.raises(IncompatibleModel, match="no declared feature set"):
        check_model_features(list(reversed(MODEL_FEATURES)), "m v3", tuple(FEATURE_SETS.values()))


def test_every_model_reads_its_own_columns_out_of_the_wide_matrix(boosters) -> None:
    """A snapshot champion and a fresh canary/shadow in one plan over SERVED_COLUMNS: each
    score equals its booster on exactly its own features; the fallback reads the leading ones."""
    rng = np.random.default_rng(5)
    wide = rng.random((500, len(SERVED_COLUMNS))) * 100
    cards = np.arange(500, dtype=np.int64)
    plan = ServingPlan(ServingModel("m", "1", boosters["1"]), canary=ServingModel("m", "2", boosters["2"]),
                       share=50, salt="2", shadow=ServingModel("m", "2", boosters["2"])).with_layout(SERVED_COLUMNS)
    scores = plan.score(wide, cards)
    narrow = predict_matrix(boosters["1"], wide[:, :len(MODEL_FEATURES)])
    fresh = predict_matrix(boosters["2"], wide)
    canary = scores.arm == "canary"
    assert 0 < canary.sum() < 500
    np.testing.assert_array_equal(scores.score[canary], fresh[canary])
    np.testing.assert_array_equal(scores.score[~canary], narrow[~canary])
    np.testing.assert_array_equal(scores.shadow_score[~canary], fresh[~canary])
    # The same plan shipped to an engine task keeps its layout and scores identically.
    shipped = plan.portable().plan()
    assert shipped.layout == SERVED_COLUMNS
    np.testing.assert_array_equal(shipped.score(wide, cards).score, scores.score)
    # Frozen: the rules read MODEL_FEATURES, the leading columns, whatever the layout.
    frozen = ServingPlan(None, frozen=True, rules=load_settings().release.fallback)
    np.testing.assert_array_equal(frozen.with_layout(SERVED_COLUMNS).score(wide, cards).score,
                                  frozen.score(wide[:, :len(MODEL_FEATURES)], cards).score)
    with pytest.raises(ValueError, match="starts with MODEL_FEATURES"):
        plan.with_layout(FRESH_FEATURE_NAMES)


def _ref(version: str, names: tuple[str, ...]) -> ModelRef:
    return ModelRef("m", version, None, names, f"models:/m/{version}")


def test_build_plan_takes_the_narrowest_layout_and_leaves_out_what_the_scorer_cannot_serve(boosters) -> None:
    settings = load_settings()
    refs = {"1": _ref("1", SNAPSHOT_V1.features), "2": _ref("2", SNAPSHOT_FRESH_V1.features)}

    def plan_for(champion: str, shadow: str | None, served) -> ServingPlan:
        view = ReleaseView("m", champion, ReleaseState(shadow=shadow))
        return build_plan(settings, view, served=served, load=lambda _s, ref: boosters[ref.version],
                          get_version=lambda _s, v: refs[v])

    everything = tuple(FEATURE_SETS.values())
    assert plan_for("1", None, everything).layout == MODEL_FEATURES  # no fresh column built for nothing
    both = plan_for("1", "2", everything)
    assert both.layout == SERVED_COLUMNS and both.shadow is not None and not both.errors
    # The stream and the API serve snapshot_v1 only: the fresh shadow is left out, named, and
    # a fresh champion leaves the rules serving, flagged with the reason.
    stream = plan_for("1", "2", (SNAPSHOT_V1,))
    assert stream.shadow is None and stream.layout == MODEL_FEATURES
    assert "snapshot_fresh_v1" in stream.errors["shadow"]
    fresh_champion = plan_for("2", None, (SNAPSHOT_V1,))
    assert fresh_champion.serves_fallback and "snapshot_fresh_v1" in (fresh_champion.fallback_reason or "")
