"""One way to score with a booster, for every path (batch in the engine, stream, training
evaluation, monitoring references): the same inputs check, the same native call, the same
dtype. A score is XGBoost's float32 probability widened exactly to a float64, so a
transaction's score is bit-identical wherever it was computed.
"""

from __future__ import annotations

import ctypes
import functools
import json
from collections.abc import Callable, Sequence
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
    native = _native_predictor()
    if native is not None and matrix.dtype == np.float64 and matrix.ndim == 2 and matrix.flags.c_contiguous:
        return native(booster, matrix)
    return booster.inplace_predict(matrix, validate_features=False).astype(np.float64)


@functools.cache  # built at first use: importing xgboost takes seconds, not at module import
def _native_predictor() -> Callable[[xgb.Booster, np.ndarray], np.ndarray] | None:
    """`inplace_predict`'s own native call for a C-ordered float64 matrix, without its Python
    wrapper: the same C function (`XGBoosterPredictFromDense`) with the same arguments, so the
    same float32 scores, for about half the cost of a small batch's call (the wrapper's input
    dispatch, and the class xgboost 3.2 builds for every result, dmlc/xgboost#12344). It uses
    xgboost's private ctypes handles: when they are not there (another xgboost), None, and
    every call goes through `inplace_predict`."""
    try:
        from xgboost.core import _LIB, _check_call, c_bst_ulong, make_jcargs
    except ImportError:  # pragma: no cover - another xgboost: the public path
        return None
    # What inplace_predict passes for predict_type="value", iteration_range=(0, 0),
    # missing=NaN, strict_shape=False and no base margin.
    args = make_jcargs(type=0, training=False, iteration_begin=0, iteration_end=0, missing=np.nan,
                       strict_shape=False, cache_id=0)
    no_proxy = ctypes.c_void_p()

    def predict(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
        preds = ctypes.POINTER(ctypes.c_float)()
        shape = ctypes.POINTER(c_bst_ulong)()
        dims = c_bst_ulong()
        interface = json.dumps(matrix.__array_interface__).encode()
        _check_call(_LIB.XGBoosterPredictFromDense(booster.handle, interface, args, no_proxy, ctypes.byref(shape),
                                                   ctypes.byref(dims), ctypes.byref(preds)))
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        # The result lives in the booster's per-thread buffer until its next call: copied here.
        return np.ctypeslib.as_array(preds, shape=out_shape).astype(np.float64)

    return predict


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
