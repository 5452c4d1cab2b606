"""`predict_matrix`, the one scoring call of every path, gives xgboost's own `inplace_predict`
scores bit for bit: through its direct native call (C-ordered float64 matrices) and through
the public call (anything else), for one row or many, with missing values, for a booster
rebuilt from bytes with a thread count, and from several threads at once (the result buffer is
the booster's per thread)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import xgboost as xgb

from cardscore.model.scoring import (
    _native_predictor,
    booster_bytes,
    load_booster_bytes,
    predict_matrix,
)


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(3000, 15))
    labels = (features[:, 0] + rng.normal(size=3000) > 1.5).astype(int)
    return xgb.train({"max_depth": 3, "objective": "binary:logistic", "nthread": 1},
                     xgb.DMatrix(features, label=labels), num_boost_round=50)


def reference(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    return booster.inplace_predict(matrix, validate_features=False).astype(np.float64)


def matrices(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for rows in (1, 2, 7, 500):
        matrix = rng.normal(size=(rows, 15)) * rng.choice([1e-3, 1.0, 1e6])
        matrix[rng.random(matrix.shape) < 0.15] = np.nan
        out.append(matrix)
    return out


def test_the_native_call_is_there_and_gives_inplace_predicts_scores(booster: xgb.Booster) -> None:
    assert _native_predictor() is not None  # the pinned xgboost: the direct call serves C-ordered float64
    for matrix in matrices(1):
        scores = predict_matrix(booster, matrix)
        assert scores.dtype == np.float64 and scores.shape == (len(matrix),)
        assert np.array_equal(scores, reference(booster, matrix), equal_nan=True)


def test_other_layouts_take_the_public_call_with_the_same_scores(booster: xgb.Booster) -> None:
    for matrix in matrices(2):
        expected = reference(booster, matrix)
        for other in (np.asfortranarray(matrix), matrix.astype(np.float32), np.repeat(matrix, 2, axis=1)[:, ::2]):
            assert np.array_equal(predict_matrix(booster, other), reference(booster, other))
        assert np.array_equal(predict_matrix(booster, np.asfortranarray(matrix)), expected)
    assert predict_matrix(booster, np.empty((0, 15))).shape == (0,)


def test_a_rebuilt_booster_with_threads_scores_the_same(booster: xgb.Booster) -> None:
    rebuilt = load_booster_bytes(booster_bytes(booster), threads=2)
    for matrix in matrices(3):
        assert np.array_equal(predict_matrix(rebuilt, matrix), reference(booster, matrix))


def test_concurrent_calls_each_get_their_own_scores(booster: xgb.Booster) -> None:
    inputs = [m for seed in range(4, 12) for m in matrices(seed)]
    expected = [reference(booster, m) for m in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda m: predict_matrix(booster, m), inputs))
            assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))
