"""Fraud-detection metrics, shared by training, the promotion gate and monitoring.

Card precision@k follows the Fraud Detection Handbook (chapter 4.2, `card_precision_top_k`):
investigators check k cards a day, so each day the transactions are grouped by card (the
card's score is its highest transaction score, its label its highest label), the k cards with
the highest scores are taken, and the day's precision is the share of frauds among them.
A card found on one day is blocked, so it is removed from the following days. The metric is
the mean over days.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# scikit-learn is imported where a metric is computed: it takes seconds to import, and every
# command line process imports this module (the monitor stage is registered by the CLI).


def auc_roc(y_true: np.ndarray | pd.Series, y_score: np.ndarray | pd.Series) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y = np.asarray(y_true)
    if np.unique(y).size < 2:
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(y_score)))


def average_precision(y_true: np.ndarray | pd.Series, y_score: np.ndarray | pd.Series) -> float:
    """Average precision (area under the precision-recall curve, step-wise); NaN without frauds."""
    y = np.asarray(y_true)
    if not y.any():
        return float("nan")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, np.asarray(y_score)))


@dataclass(frozen=True)
class CardPrecision:
    """Card precision@k: the mean over days, and each day's value and counts."""

    k: int
    mean: float
    per_day: list[float] = field(default_factory=list)
    days: list[object] = field(default_factory=list)
    compromised_cards_per_day: list[int] = field(default_factory=list)
    detected_cards_per_day: list[int] = field(default_factory=list)


def card_precision_at_k(
    frame: pd.DataFrame,
    k: int = 100,
    *,
    score: str = "score",
    label: str = "label",
    card: str = "customer_id",
    day: str = "day",
    remove_detected: bool = True,
) -> CardPrecision:
    """The handbook's card precision@k over the days present in `frame`.

    `frame` has one row per transaction with its score, 0/1 label, card id and day (any
    sortable value: a date or a day number). Ties in score are broken by card id, so the
    result is deterministic (the handbook leaves ties to pandas' unstable sort).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    missing = {score, label, card, day} - set(frame.columns)
    if missing:
        raise KeyError(f"card_precision_at_k needs columns {sorted(missing)}")
    detected: set[object] = set()
    per_day: list[float] = []
    compromised: list[int] = []
    found: list[int] = []
    days = sorted(frame[day].unique())
    for value in days:
        rows = frame.loc[frame[day] == value, [card, score, label]]
        if remove_detected and detected:
            rows = rows[~rows[card].isin(detected)]
        cards = rows.groupby(card, sort=False).agg({score: "max", label: "max"}).reset_index()
        compromised.append(int((cards[label] > 0).sum()))
        top = cards.sort_values([score, card], ascending=[False, True], kind="mergesort").head(k)
        hits = top.loc[top[label] > 0, card]
        found.append(len(hits))
        per_day.append(len(hits) / k)
        if remove_detected:
            detected.update(hits.tolist())
    mean = float(np.mean(per_day)) if per_day else float("nan")
    return CardPrecision(k, mean, per_day, list(days), compromised, found)
