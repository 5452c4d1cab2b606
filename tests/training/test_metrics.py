"""Metrics: card precision@k by the handbook's definition, AUC and AP against scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cardscore.model.metrics import auc_roc, average_precision, card_precision_at_k


def rows(*items: tuple[int, str, float, int]) -> pd.DataFrame:
    return pd.DataFrame(items, columns=["day", "customer_id", "score", "label"])


def test_card_precision_hand_made_example() -> None:
    frame = rows(
        # day 1: card scores are per-card maxima; F's label is its max (a low-scored fraud).
        (1, "A", 0.90, 1),
        (1, "B", 0.80, 0),
        (1, "C", 0.70, 1),
        (1, "D", 0.10, 1),
        (1, "F", 0.20, 1),
        (1, "F", 0.85, 0),
        # day 2: A was detected on day 1 and is removed, although it scores highest again.
        (2, "A", 0.95, 1),
        (2, "C", 0.60, 1),
        (2, "E", 0.50, 0),
        (2, "B", 0.40, 0),
        # day 3: C, detected on day 2, is removed; top 2 are G (genuine) and H (fraud).
        (3, "C", 0.99, 1),
        (3, "G", 0.30, 0),
        (3, "H", 0.20, 1),
    )
    result = card_precision_at_k(frame, k=2)
    # day 1 top 2: A (0.90, fraud), F (0.85, fraud by its other transaction) -> 2/2
    # day 2 top 2 without A: C (fraud), E (genuine) -> 1/2
    # day 3 top 2 without A, C: G, H -> 1/2
    assert result.per_day == [1.0, 0.5, 0.5]
    assert result.mean == pytest.approx(2 / 3)
    assert result.detected_cards_per_day == [2, 1, 1]
    assert result.compromised_cards_per_day == [4, 1, 1]  # day 2: C only (A removed); day 3: H

    kept = card_precision_at_k(frame, k=2, remove_detected=False)
    assert kept.per_day == [1.0, 1.0, 0.5]  # day 2: A and C both in the top 2 again


def test_card_precision_divides_by_k_even_with_fewer_cards() -> None:
    frame = rows((1, "A", 0.9, 1), (1, "B", 0.1, 0))
    assert card_precision_at_k(frame, k=100).mean == pytest.approx(0.01)


def handbook_reference(frame: pd.DataFrame, k: int) -> float:
    """The handbook's algorithm written out plainly, loop by loop, as an independent oracle."""
    detected: set = set()
    precisions = []
    for day in sorted(set(frame["day"])):
        cards: dict = {}
        for _, r in frame[frame["day"] == day].iterrows():
            if r.customer_id in detected:
                continue
            score, label = cards.get(r.customer_id, (-1.0, 0))
            cards[r.customer_id] = (max(score, r.score), max(label, r.label))
        ranked = sorted(cards.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
        hits = [c for c, (_, label) in ranked if label == 1]
        precisions.append(len(hits) / k)
        detected.update(hits)
    return float(np.mean(precisions))


def test_card_precision_matches_a_plain_reimplementation() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    frame = pd.DataFrame({
        "day": rng.integers(0, 5, n),
        "customer_id": rng.integers(0, 300, n),
        "score": rng.random(n).round(3),  # rounding creates ties
        "label": (rng.random(n) < 0.05).astype(int),
    })
    frame.loc[frame["label"] == 1, "score"] += 0.3
    for k in (5, 20, 100):
        assert card_precision_at_k(frame, k).mean == pytest.approx(handbook_reference(frame, k), abs=1e-12)


def test_auc_and_ap_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(5000) < 0.02).astype(int)
    s = rng.random(5000) + y * rng.random(5000)
    assert auc_roc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert 0.5 < auc_roc(y, s) < 1.0


def test_metrics_are_nan_without_both_classes() -> None:
    y = np.zeros(10, dtype=int)
    s = np.linspace(0, 1, 10)
    assert np.isnan(auc_roc(y, s))
    assert np.isnan(average_precision(y, s))
