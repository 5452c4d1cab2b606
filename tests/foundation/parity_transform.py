"""A small transformation using what the pipeline uses: windows over time, joins, dates."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F


def transform(spark: SparkSession, tx: DataFrame, terminals: DataFrame) -> DataFrame:
    seconds = F.col("event_time").cast("long")
    per_customer = Window.partitionBy("customer_id").orderBy(seconds).rangeBetween(-7 * 86400, 0)
    enriched = (
        tx.withColumn("tx_date", F.to_date("event_time"))
        .withColumn("is_weekend", (F.dayofweek("event_time").isin(1, 7)).cast("int"))
        .withColumn("is_night", (F.hour("event_time") <= 6).cast("int"))
        .withColumn("cust_nb_7d", F.count("*").over(per_customer))
        .withColumn("cust_mean_7d", F.avg("amount").over(per_customer))
    )
    daily = enriched.groupBy("terminal_id", "tx_date").agg(
        F.count("*").alias("nb"), F.sum("amount").alias("total")
    )
    return (
        enriched.join(daily, ["terminal_id", "tx_date"], "left")
        .join(terminals, "terminal_id", "left")
        .select(
            "transaction_id", "customer_id", "terminal_id", "tx_date", "is_weekend", "is_night",
            "cust_nb_7d", "cust_mean_7d", "nb", "total", "region",
        )
    )
