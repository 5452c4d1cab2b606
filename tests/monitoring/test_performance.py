"""Delayed-label performance in the engine equals the pandas/scikit-learn computation: AUC, AP
and card precision@k per scored day and model version, ties in scores and cards included,
groups with one class (undefined AUC/AP) and fewer cards than k."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from cardscore.monitoring.metrics import PERFORMANCE_STATS, performance_stats
from cardscore.monitoring.performance import performance_stats_spark


def _predictions(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    parts = []
    next_id = 0
    groups = [(0, 4000, "3", 0.02), (0, 2500, "4", 0.05), (1, 1800, "4", 0.03), (2, 300, "4", 0.0),
              (3, 60, "3", 1.0), (3, 40, "4", 0.1)]  # (day, rows, version, fraud rate)
    for d, n, version, fraud_rate in groups:
        scores = np.round(rng.random(n), 2)  # few distinct values: many ties
        parts.append(pd.DataFrame({
            "transaction_id": np.arange(next_id, next_id + n, dtype=np.int64),
            "customer_id": rng.integers(0, max(n // 4, 5), n).astype(np.int64),
            "score": scores,
            "model_version": version,
            "tx_date": date(2018, 5, 1) + timedelta(days=d),
            "fraud": rng.random(n) < fraud_rate,
        }))
        next_id += n
    frame = pd.concat(parts, ignore_index=True)
    # Labels: the frauds plus some genuine reports (which must not count).
    genuine = frame.loc[~frame["fraud"]].sample(50, random_state=seed)
    labels = pd.concat([
        pd.DataFrame({"transaction_id": frame.loc[frame["fraud"], "transaction_id"], "is_fraud": True}),
        pd.DataFrame({"transaction_id": genuine["transaction_id"], "is_fraud": False}),
    ], ignore_index=True)
    return frame.drop(columns="fraud"), labels


def test_engine_statistics_equal_the_pandas_ones(spark) -> None:
    predictions, labels = _predictions()
    expected = performance_stats(predictions, labels, k=100)
    sdf = spark.createDataFrame(predictions)
    frauds = spark.createDataFrame(labels.loc[labels["is_fraud"], ["transaction_id"]])
    got = performance_stats_spark(sdf, frauds, k=100)

    assert list(got.columns) == list(PERFORMANCE_STATS)
    assert got[["tx_date", "model_version"]].values.tolist() == expected[["tx_date", "model_version"]].values.tolist()
    assert got["transactions"].tolist() == expected["transactions"].tolist()
    assert got["known_frauds"].tolist() == expected["known_frauds"].tolist()
    for column in ("auc_roc", "average_precision", "card_precision_at_k"):
        np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-12, equal_nan=True)
    # The edge cases are exercised: undefined AUC (one class), undefined AP (no fraud), k > cards.
    assert got["auc_roc"].isna().sum() >= 2 and got["average_precision"].isna().sum() >= 1
    assert (got["transactions"] < 100).any()


def test_no_predictions_give_no_statistics(spark) -> None:
    empty = spark.createDataFrame([], "transaction_id long, customer_id long, score double, "
                                      "model_version string, tx_date date")
    frauds = spark.createDataFrame([], "transaction_id long")
    assert performance_stats_spark(empty, frauds, k=10).empty
