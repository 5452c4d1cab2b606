"""One way to score with a booster, for every path (batch in the engine, stream, training
evaluation, monitoring references): the same inputs check, the same native call, the same
dtype. A score is XGBoost's float32 probability widened exactly to a float64, so a
transaction's score is bit-identical wherever it was computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cardscore.features.definitions import MODEL_FEATURES
from cardscore.features.feature_sets import SNAPSHOT_V1, FeatureSet, feature_set_of

if TYPE_CHECKING:
    import xgboost as xgb


class IncompatibleModel(ValueError):
    """The model's inputs are not a feature set this scorer serves (`features.feature_sets`)."""


def check_model_features(
    feature_names: Sequence[str] | None, what: str, served: Sequence[FeatureSet] = (SNAPSHOT_V1,)
) -> FeatureSet:
    """The model's feature set; `IncompatibleModel` unless its names are exactly one of the
    `served` sets, in order (every scorer serves `snapshot_v1`; the batch scorer also
    `snapshot_fresh_v1`)."""
    names = tuple(feature_names or ())
    found = feature_set_of(names)
    if found is not None and found in served:
        return found
    offered = ", ".join(s.name for s in served)
    if found is not None:
        raise IncompatibleModel(
            f"{what} reads feature set {found.name} ({found.description}), which this scorer does "
            f"not serve (it serves {offered}); the batch scorer serves every declared set "
            "(features/feature_sets.py)"
        )
    raise IncompatibleModel(
        f"{what} expects features {list(names) or '(none recorded)'}, no declared feature set; "
        f"this scorer serves {offered}: {[list(s.features) for s in served]} (features/feature_sets.py)"
    )


def predict_matrix(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """Probabilities (float64) for a (rows x features) float64 matrix in the booster's
    feature order: one native call, no feature-name validation (the caller built the order)."""
    if not len(matrix):
        return np.empty(0, dtype=np.float64)
    return booster.inplace_predict(matrix, validate_features=False).astype(np.float64)


def predict(booster: xgb.Booster, frame: pd.DataFrame, feature_names: Sequence[str] | None = None) -> np.ndarray:
    """Probabilities (float64) for the rows of a frame holding the model's feature columns
    (any column order: the booster's own feature names, else `feature_names`, else
    MODEL_FEATURES, select them; missing values stay NaN)."""
    names = list(booster.feature_names or feature_names or MODEL_FEATURES)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise KeyError(f"missing model feature column(s) {missing}")
    return predict_matrix(booster, frame[names].to_numpy(dtype=np.float64))


def booster_bytes(booster: xgb.Booster) -> bytes:
    """The booster as UBJSON bytes: what the engine's tasks rebuild it from."""
    return bytes(booster.save_raw("ubj"))


def load_booster_bytes(raw: bytes, threads: int = 0) -> xgb.Booster:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    if threads:
        booster.set_param({"nthread": threads})
    return booster
