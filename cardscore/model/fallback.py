"""The rule-based fallback: what every scorer serves instead of a model when the release is
frozen (`cardscore release freeze`) or when no model can be loaded. Every such score is flagged
`fallback` and names the rules' version (`FALLBACK_VERSION`).

Three rules over the same features the model reads (the snapshot's and the request's, so no
scorer needs anything new), one per fraud pattern the project's data show (the handbook's
scenarios): a rule that fires gives its score and the highest fired score wins.

1. **amount**: `tx_amount > amount_threshold` (220) -> `amount_score` (0.9);
2. **terminal risk**: `terminal_id_risk_7day_window >= terminal_risk_threshold` (0.2: a fifth of
   the terminal's transactions in its delayed 7-day window were confirmed frauds) ->
   `terminal_risk_score` (0.8);
3. **spending spike**: the card has a 30-day history and `tx_amount > spending_ratio_threshold`
   (3) x its 30-day mean amount and above `spending_min_amount` (50) -> `spending_score` (0.6).

When no rule fires the score is `low_score` (0.1) x the largest of amount/amount_threshold,
risk/risk_threshold and (amount/mean)/ratio_threshold, each capped at 1, so the fallback still
orders quiet transactions for a top-k review. Deterministic, vectorised, the same numbers in
every scorer (`release.fallback` settings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cardscore.features.definitions import (
    MODEL_FEATURES,
    TX_AMOUNT,
    customer_count,
    customer_mean,
    terminal_risk,
)

if TYPE_CHECKING:
    from cardscore.core.config.release import FallbackRules

FALLBACK_MODEL_NAME = "cardscore-fallback-rules"
FALLBACK_VERSION = "rules-1"  # bump when the rules change: every fallback score names it

_AMOUNT = MODEL_FEATURES.index(TX_AMOUNT)
_RISK = MODEL_FEATURES.index(terminal_risk(7))
_MEAN = MODEL_FEATURES.index(customer_mean(30))
_COUNT = MODEL_FEATURES.index(customer_count(30))


def fallback_scores(matrix: np.ndarray, rules: FallbackRules) -> np.ndarray:
    """Scores (float64 in [0, 1]) of the rules for a (rows x MODEL_FEATURES) float64 matrix."""
    x = np.asarray(matrix, dtype=np.float64)
    if not len(x):
        return np.empty(0, dtype=np.float64)
    amount = np.nan_to_num(x[:, _AMOUNT], nan=0.0)
    risk = np.nan_to_num(x[:, _RISK], nan=0.0)
    mean = np.nan_to_num(x[:, _MEAN], nan=0.0)
    history = np.nan_to_num(x[:, _COUNT], nan=0.0) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(history & (mean > 0), amount / np.where(mean > 0, mean, 1.0), 0.0)

    amount_fires = amount > rules.amount_threshold
    risk_fires = risk >= rules.terminal_risk_threshold
    spending_fires = history & (ratio > rules.spending_ratio_threshold) & (amount > rules.spending_min_amount)

    evidence = np.maximum.reduce([
        np.minimum(amount / rules.amount_threshold, 1.0),
        np.minimum(risk / rules.terminal_risk_threshold, 1.0),
        np.minimum(ratio / rules.spending_ratio_threshold, 1.0),
    ])
    score = rules.low_score * np.clip(evidence, 0.0, 1.0)
    score = np.where(spending_fires, np.maximum(score, rules.spending_score), score)
    score = np.where(risk_fires, np.maximum(score, rules.terminal_risk_score), score)
    score = np.where(amount_fires, np.maximum(score, rules.amount_score), score)
    return score.astype(np.float64)
