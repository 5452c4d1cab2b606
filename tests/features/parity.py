"""The feature transformations as one function of plain inputs, run by the engine-parity test
on both engines (classic Spark in a subprocess: tests/support/classic.py)."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cardscore.features.transform import (
    customer_snapshots,
    terminal_snapshots,
    with_request_time_features,
)


def all_features(spark: SparkSession, transactions: DataFrame, labels: DataFrame, first: str,
                 last: str) -> DataFrame:
    """Customer and terminal snapshots of [first, last] and the request-time flags of every
    transaction, stacked in one frame (column `kind` says which)."""
    d0, d1 = date.fromisoformat(first), date.fromisoformat(last)
    customers = customer_snapshots(transactions, d0, d1).withColumn("kind", F.lit("customer"))
    terminals = terminal_snapshots(transactions, labels, d0, d1).withColumn("kind", F.lit("terminal"))
    flags = (
        with_request_time_features(transactions.withColumnRenamed("amount", "tx_amount"), "tx_amount", "event_time")
        .select("transaction_id", "tx_during_weekend", "tx_during_night")
        .withColumn("kind", F.lit("request"))
    )
    return customers.unionByName(terminals, allowMissingColumns=True).unionByName(
        flags, allowMissingColumns=True
    )


def fresh(spark: SparkSession, transactions: DataFrame, labels: DataFrame) -> DataFrame:
    """The fresh (event-time) features of every transaction (features/fresh_spark.py)."""
    from cardscore.features.fresh_spark import fresh_features

    return fresh_features(transactions, labels)
