"""The serving plan every scorer uses, without a registry: sticky card arms, canary, shadow,
the rule-based fallback, and the plan shipped as bytes to engine tasks (fast tier; small real
XGBoost boosters)."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from cardscore.core.config.release import FallbackRules
from cardscore.features.definitions import (
    MODEL_FEATURES,
    TX_AMOUNT,
    customer_count,
    customer_mean,
    terminal_risk,
)
from cardscore.model.fallback import FALLBACK_VERSION, fallback_scores
from cardscore.model.release import (
    ARM_CANARY,
    ARM_CHAMPION,
    ARM_FALLBACK,
    ServingModel,
    ServingPlan,
    card_buckets,
    in_canary,
)


def _booster(seed: int) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.random((300, len(MODEL_FEATURES))) * 100
    y = (x[:, seed % len(MODEL_FEATURES)] + rng.normal(scale=20, size=300) > 50).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(MODEL_FEATURES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 2, "seed": seed, "nthread": 1},
                     data, num_boost_round=5)


@pytest.fixture(scope="module")
def models() -> dict[str, ServingModel]:
    return {v: ServingModel("m", v, _booster(int(v))) for v in ("1", "2", "3")}


def _matrix(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, len(MODEL_FEATURES))) * 100


def test_card_arms_are_sticky_salted_and_a_ramp_only_adds_cards() -> None:
    cards = np.arange(20_000, dtype=np.int64)
    buckets = card_buckets(cards, "7")
    assert ((buckets >= 0) & (buckets < 100)).all()
    np.testing.assert_array_equal(buckets, card_buckets(cards[::-1], "7")[::-1])  # per card, not per position
    five, quarter, everyone = (in_canary(cards, "7", s) for s in (5, 25, 100))
    assert 0.04 < five.mean() < 0.06 and 0.23 < quarter.mean() < 0.27 and everyone.all()
    assert not (five & ~quarter).any()  # 5 -> 25 keeps every card already in the canary
    other_salt = in_canary(cards, "8", 5)
    assert (five != other_salt).mean() > 0.05  # another version tries other cards first
    assert not in_canary(cards, "7", 0).any()


def test_fallback_rules_fire_and_rank_quiet_transactions() -> None:
    rules = FallbackRules()
    x = np.zeros((5, len(MODEL_FEATURES)))
    amount, risk = MODEL_FEATURES.index(TX_AMOUNT), MODEL_FEATURES.index(terminal_risk(7))
    mean, count = MODEL_FEATURES.index(customer_mean(30)), MODEL_FEATURES.index(customer_count(30))
    x[0, amount] = 500  # amount rule
    x[1, amount], x[1, risk] = 10, 0.5  # terminal rule
    x[2, amount], x[2, mean], x[2, count] = 120, 20, 30  # spending spike
    x[3, amount] = 20  # quiet
    x[4, amount] = 40  # quiet too, a larger amount: ranks above row 3
    scores = fallback_scores(x, rules)
    assert scores[0] == rules.amount_score and scores[1] == rules.terminal_risk_score
    assert scores[2] == rules.spending_score
    assert 0 < scores[3] < scores[4] <= rules.low_score
    with pytest.raises(ValueError, match="low_score"):
        FallbackRules(low_score=0.95)


def test_a_canary_serves_its_cards_and_the_champion_is_recorded_beside_it(models) -> None:
    rows = 4000
    x, cards = _matrix(rows), np.arange(rows) % 1000
    plan = ServingPlan(models["1"], canary=models["2"], share=25, salt="2", shadow=None, rules=FallbackRules())
    out = plan.score(x, cards)
    canary = in_canary(cards, "2", 25)
    champion_scores, canary_scores = models["1"].predict(x), models["2"].predict(x)
    assert (out.arm[canary] == ARM_CANARY).all() and (out.arm[~canary] == ARM_CHAMPION).all()
    np.testing.assert_array_equal(out.score[canary], canary_scores[canary])
    np.testing.assert_array_equal(out.score[~canary], champion_scores[~canary])
    assert set(out.model_version[canary]) == {"2"} and set(out.model_version[~canary]) == {"1"}
    # The champion's counterfactual on the canary arm; no shadow on the champion arm.
    np.testing.assert_array_equal(out.shadow_score[canary], champion_scores[canary])
    assert np.isnan(out.shadow_score[~canary]).all() and not out.fallback.any()
    # A card's rows are all on one arm (sticky): 4 rows per card here.
    per_card = {c: set(out.arm[cards == c]) for c in range(1000)}
    assert all(len(arms) == 1 for arms in per_card.values())


def test_a_shadow_scores_beside_the_champion_and_is_never_served(models) -> None:
    x, cards = _matrix(500, 1), np.arange(500)
    out = ServingPlan(models["1"], shadow=models["3"], rules=FallbackRules()).score(x, cards)
    np.testing.assert_array_equal(out.score, models["1"].predict(x))
    np.testing.assert_array_equal(out.shadow_score, models["3"].predict(x))
    assert set(out.shadow_model_version) == {"3"} and set(out.arm) == {ARM_CHAMPION}


def test_frozen_plans_and_plans_without_a_champion_serve_the_flagged_rules(models) -> None:
    x, cards = _matrix(50, 2), np.arange(50)
    expected = fallback_scores(x, FallbackRules())
    for plan in (ServingPlan(models["1"], canary=models["2"], share=50, salt="2", frozen=True, rules=FallbackRules()),
                 ServingPlan(None, rules=FallbackRules(), fallback_reason="no champion")):
        out = plan.score(x, cards)
        np.testing.assert_array_equal(out.score, expected)
        assert out.fallback.all() and set(out.arm) == {ARM_FALLBACK} and set(out.model_version) == {FALLBACK_VERSION}


def test_the_portable_plan_scores_exactly_as_the_plan(models) -> None:
    x, cards = _matrix(800, 3), np.arange(800)
    plan = ServingPlan(models["1"], canary=models["2"], share=30, salt="2", shadow=models["3"], rules=FallbackRules())
    import pickle

    shipped = pickle.loads(pickle.dumps(plan.portable())).plan(threads=1)
    a, b = plan.score(x, cards), shipped.score(x, cards)
    np.testing.assert_array_equal(a.score, b.score)
    np.testing.assert_array_equal(a.arm, b.arm)
    np.testing.assert_array_equal(a.shadow_score, b.shadow_score)


def test_a_canary_that_is_also_the_shadow_is_scored_once_with_the_same_results(models) -> None:
    x, cards = _matrix(1000, 4), np.arange(1000) % 300
    same = ServingPlan(models["1"], canary=models["2"], share=25, salt="2", shadow=models["2"], rules=FallbackRules())
    out = same.score(x, cards)
    canary = in_canary(cards, "2", 25)
    candidate, champion = models["2"].predict(x), models["1"].predict(x)
    np.testing.assert_array_equal(out.score, np.where(canary, candidate, champion))
    np.testing.assert_array_equal(out.shadow_score, np.where(canary, champion, candidate))
    assert set(out.shadow_model_version[~canary]) == {"2"} and set(out.shadow_model_version[canary]) == {"1"}


def test_a_failing_candidate_never_stops_the_champion(models) -> None:
    x, cards = _matrix(600, 5), np.arange(600) % 200
    rng = np.random.default_rng(0)
    wrong_inputs = xgb.train({"objective": "binary:logistic", "nthread": 1},
                             xgb.DMatrix(rng.random((50, 3)), label=rng.integers(0, 2, 50)), num_boost_round=2)
    broken = ServingModel("m", "9", wrong_inputs)  # its predict call raises on our matrix
    champion_scores = models["1"].predict(x)
    for plan in (ServingPlan(models["1"], canary=broken, share=40, salt="9", rules=FallbackRules()),
                 ServingPlan(models["1"], canary=broken, share=40, salt="9", shadow=broken, rules=FallbackRules())):
        out = plan.score(x, cards)
        np.testing.assert_array_equal(out.score, champion_scores)
        assert set(out.arm) == {ARM_CHAMPION} and np.isnan(out.shadow_score).all()
        assert out.errors[ARM_CANARY] == int(in_canary(cards, "9", 40).sum())
    out = ServingPlan(models["1"], shadow=broken, rules=FallbackRules()).score(x, cards)
    np.testing.assert_array_equal(out.score, champion_scores)
    assert out.errors == {"shadow": 600} and np.isnan(out.shadow_score).all()
