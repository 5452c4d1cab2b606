"""Delayed-label performance computed in the engine: the driver gets one row per scored day and
model version, whatever the days' volumes.

`performance_stats_spark(predictions, fraud_ids, k)` returns the table `performance_stats`
(cardscore.monitoring.metrics) computes in pandas, with the same definitions:

* label: a prediction is a fraud when its transaction is among the known frauds, else genuine;
* AUC ROC (NaN with one class): the probability that a fraud outscores a genuine transaction,
  ties counting one half: over the distinct scores, sum of genuine(s) x (frauds above s +
  frauds at s / 2), over frauds x genuines. That is exactly the trapezoidal area under the
  ROC curve that scikit-learn computes;
* average precision (NaN without frauds): scikit-learn's step-wise sum over the distinct scores
  in decreasing order of (frauds at s / frauds) x (precision of the scores >= s);
* card precision@k: each card's score is its highest and its label its highest; the k cards
  with the highest scores (ties by card id) and the share of frauds among them (over k).

Only sums over distinct scores differ from scikit-learn's order of additions, so values agree
to ~1e-15 relative (tests/monitoring/test_performance.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from cardscore.monitoring.metrics import PERFORMANCE_STATS
from cardscore.monitoring.profile import SCORE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_GROUP = ("tx_date", "model_version")


def performance_stats_spark(predictions: DataFrame, fraud_ids: DataFrame, k: int) -> pd.DataFrame:
    """`predictions`: transaction_id, customer_id, score, model_version, tx_date; `fraud_ids`:
    transaction_id of the known frauds (duplicates allowed). One row per (tx_date, version)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if k < 1:
        raise ValueError("k must be at least 1")
    frauds = fraud_ids.select("transaction_id").distinct().withColumn("__fraud", F.lit(1))
    labelled = predictions.join(frauds, "transaction_id", "left").select(
        *_GROUP, "customer_id", F.col(SCORE).cast("double").alias(SCORE),
        F.coalesce(F.col("__fraud"), F.lit(0)).alias("label"),
    )
    group = [F.col(c) for c in _GROUP]

    # Per distinct score: frauds and genuines there, and the frauds/genuines at or above it.
    at_score = labelled.groupBy(*_GROUP, SCORE).agg(
        F.sum("label").cast("long").alias("pos"), F.sum(1 - F.col("label")).cast("long").alias("neg"))
    down = Window.partitionBy(*group).orderBy(F.col(SCORE).desc()).rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    cumulative = at_score.select(
        *_GROUP, "pos", "neg",
        F.sum("pos").over(down).alias("tp"), F.sum("neg").over(down).alias("fp"))
    curves = cumulative.groupBy(*_GROUP).agg(
        F.sum("pos").alias("known_frauds"),
        F.sum("neg").alias("genuines"),
        F.sum(F.col("neg") * (F.col("tp") - F.col("pos") + F.col("pos") / 2.0)).alias("auc_sum"),
        F.sum(F.col("pos") * (F.col("tp") / (F.col("tp") + F.col("fp")))).alias("ap_sum"),
    )

    # Cards: highest score and label per card, the k best of each group.
    cards = labelled.groupBy(*_GROUP, "customer_id").agg(
        F.max(SCORE).alias(SCORE), F.max("label").alias("label"))
    ranked = Window.partitionBy(*group).orderBy(F.col(SCORE).desc(), F.col("customer_id").asc())
    top = cards.withColumn("rank", F.row_number().over(ranked)).where(F.col("rank") <= k)
    hits = top.groupBy(*_GROUP).agg(F.sum("label").alias("hits"))

    stats = (
        curves.join(hits, list(_GROUP), "left")
        .select(
            *_GROUP,
            (F.col("known_frauds") + F.col("genuines")).alias("transactions"),
            "known_frauds",
            F.when((F.col("known_frauds") > 0) & (F.col("genuines") > 0),
                   F.col("auc_sum") / (F.col("known_frauds") * F.col("genuines"))).alias("auc_roc"),
            F.when(F.col("known_frauds") > 0, F.col("ap_sum") / F.col("known_frauds")).alias("average_precision"),
            (F.coalesce(F.col("hits"), F.lit(0)) / F.lit(float(k))).alias("card_precision_at_k"),
        )
        .toPandas()  # one row per scored day and model version
    )
    if stats.empty:
        return pd.DataFrame(columns=list(PERFORMANCE_STATS))
    stats["tx_date"] = pd.to_datetime(stats["tx_date"]).dt.date
    stats["model_version"] = stats["model_version"].astype(str)
    for column in ("transactions", "known_frauds"):
        stats[column] = stats[column].astype("int64")
    for column in ("auc_roc", "average_precision", "card_precision_at_k"):
        stats[column] = stats[column].astype("float64")  # None (undefined) -> NaN, as in pandas
    return stats[list(PERFORMANCE_STATS)].sort_values(list(_GROUP), kind="mergesort").reset_index(drop=True)
