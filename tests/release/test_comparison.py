"""The release comparison and rollback criteria on hand-made predictions (fast tier)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cardscore.core.config.release import RollbackCriteria
from cardscore.model.release import in_canary
from cardscore.monitoring.release import breaches, pairs_of, release_rows, top_k_cards


def _day(candidate_scores, champion_scores, share: float, cards: np.ndarray) -> pd.DataFrame:
    """Predictions as the scorers write them: canary cards served by v2 (champion recorded
    beside), the other cards by v1 with v2 as the shadow."""
    canary = in_canary(cards, "2", share)
    return pd.DataFrame({
        "transaction_id": np.arange(len(cards)),
        "customer_id": cards,
        "arm": np.where(canary, "canary", "champion"),
        "model_version": np.where(canary, "2", "1"),
        "score": np.where(canary, candidate_scores, champion_scores),
        "shadow_score": np.where(canary, champion_scores, candidate_scores),
        "shadow_model_version": np.where(canary, "1", "2"),
    })


def test_pairs_recover_both_models_scores_on_every_transaction() -> None:
    rng = np.random.default_rng(0)
    cards = rng.integers(0, 300, 2000)
    champion, candidate = rng.random(2000), rng.random(2000)
    pairs = pairs_of(_day(candidate, champion, 30, cards))
    order = np.argsort(pairs.transaction_id)
    assert (pairs.candidate, pairs.champion_version, pairs.candidate_is_canary) == ("2", "1", True)
    np.testing.assert_array_equal(pairs.champion[order], champion)
    np.testing.assert_array_equal(pairs.candidate_scores[order], candidate)


def test_a_faithful_candidate_passes_and_a_bad_one_breaches() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    cards = rng.integers(0, 500, n)
    champion = rng.beta(0.5, 5, n)
    criteria = RollbackCriteria()
    good = np.clip(champion + rng.normal(0, 0.005, n), 0, 1)
    rows = release_rows(_day(good, champion, 25, cards), 0.5, criteria, top_k=50)
    assert not breaches(rows)
    by = {(r.metric, r.subject): r for r in rows}
    assert by[("release_alert_agreement", None)].value > 0.95
    assert by[("release_topk_overlap", None)].value > 0.8
    assert by[("release_arm_rows", "canary")].value + by[("release_arm_rows", "champion")].value == n
    quantiles = by[("release_arm_mean_score", "champion")].details["quantiles"]
    assert quantiles["p10"] <= quantiles["p50"] <= quantiles["p90"] <= quantiles["p99"]

    bad = rng.random(n) * 0.3  # a model that never alerts and scores at random
    rows = release_rows(_day(bad, champion, 25, cards), 0.5, criteria, top_k=50)
    found = {(r.metric, r.subject) for r in breaches(rows)}
    assert ("release_score_psi", None) in found and ("release_alert_rate_ratio", "min") in found
    assert all(r.model_version == "2" for r in breaches(rows))

    # Too few transactions: measured, never judged.
    small = release_rows(_day(bad[:100], champion[:100], 25, cards[:100]), 0.5, criteria, top_k=10)
    assert not breaches(small) and any(r.metric == "release_score_psi" for r in small)


def test_precision_ratio_judges_a_candidate_that_ranks_frauds_worse() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    cards = rng.integers(0, 400, n)
    fraud = rng.random(n) < 0.05
    champion = np.where(fraud, rng.uniform(0.4, 1, n), rng.uniform(0, 0.6, n))
    shuffled = rng.permutation(champion)  # same distribution, no skill
    labels = pd.Series(fraud.astype(int), index=np.arange(n))
    rows = release_rows(_day(shuffled, champion, 50, cards), 0.5, RollbackCriteria(), top_k=50, labels=labels)
    precision = next(r for r in rows if r.metric == "release_precision_ratio")
    assert precision.value < 0.5 and precision.violated
    assert top_k_cards(np.array([1, 1, 2, 3]), np.array([0.1, 0.9, 0.5, 0.2]), 2) == {1, 2}
