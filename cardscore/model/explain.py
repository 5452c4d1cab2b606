"""Why a score: per-feature contributions of a tree model (XGBoost's exact TreeSHAP values).

`booster.predict(..., pred_contribs=True)` gives, per row, one value per feature plus a bias,
in log-odds (margin) units: their sum is the margin, and the score is its logistic. An analyst
reads the largest ones: which features pushed this transaction towards fraud (positive) or
away from it (negative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cardscore.features.definitions import MODEL_FEATURES

if TYPE_CHECKING:
    import xgboost as xgb


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float | None  # the feature's value in the model input (None: missing, NaN)
    contribution: float  # log-odds


def contributions(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """(rows x (features + 1)) contributions; the last column is the bias."""
    import xgboost as xgb

    if not len(matrix):
        return np.empty((0, matrix.shape[1] + 1), dtype=np.float64)
    data = xgb.DMatrix(np.asarray(matrix, dtype=np.float64), missing=np.nan, nthread=1)
    return booster.predict(data, pred_contribs=True, validate_features=False).astype(np.float64)


def top_contributions(booster: xgb.Booster, matrix: np.ndarray, k: int,
                      names: Sequence[str] = MODEL_FEATURES) -> tuple[list[list[Contribution]], np.ndarray]:
    """Per row, the `k` contributions largest in absolute value (ties: model feature order),
    and the bias of each row."""
    values = contributions(booster, matrix)
    bias = values[:, -1] if len(values) else np.empty(0)
    per_feature = values[:, :-1]
    k = min(k, len(names))
    out: list[list[Contribution]] = []
    order = np.argsort(-np.abs(per_feature), axis=1, kind="stable")[:, :k] if k else np.empty((len(values), 0), int)
    for row, picks in enumerate(order.tolist()):
        out.append([
            Contribution(names[j], _number(matrix[row, j]), float(per_feature[row, j])) for j in picks
        ])
    return out, bias


def _number(value: float) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value
