"""Engine smoke test: write a small Delta table, append to it, read it back, and run a pandas
UDF where the engine runs them (its Python must import the jobs' dependencies).

Use it to check that a cluster set-up works before running the pipeline:
    SPARK_REMOTE=sc://127.0.0.1:15002 spark-submit jobs/smoke/main.py --out file:///tmp/smoke
    spark-submit --jars "$(cardscore engine jars)" --conf ... jobs/smoke/main.py --out file:///tmp/smoke
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 --conf ... jobs/smoke/main.py --out s3://bucket/smoke
"""

from __future__ import annotations

import argparse

from cardscore.core.logs import get_logger
from cardscore.core.stage import StageCall, StageOutcome, StageSpec

log = get_logger("jobs.smoke")


def smoke(call: StageCall) -> StageOutcome:
    from pyspark.sql import functions as F

    ctx = call.ctx
    spark = ctx.spark
    out = call.options.get("out") or ctx.lake.uri("ops.smoke")
    df = spark.range(100).withColumn("bucket", (F.col("id") % 4).cast("int"))
    df.write.format("delta").mode("overwrite").partitionBy("bucket").save(out)
    spark.range(100, 110).withColumn("bucket", F.lit(0)).write.format("delta").mode("append").save(out)
    rows = spark.read.format("delta").load(out).count()
    v0 = spark.read.format("delta").option("versionAsOf", 0).load(out).count()
    if (rows, v0) != (110, 100):
        raise RuntimeError(f"smoke check read back {rows} rows (v0: {v0}); expected 110 (v0: 100)")
    pythons = udf_pythons(spark)
    log.info("smoke.ok", table=out, rows=rows, version0_rows=v0, udf_pythons=pythons)
    return StageOutcome(details={"table": out, "rows": rows, "version0_rows": v0, "udf_pythons": pythons},
                        message=f"smoke ok: {out} has {rows} rows ({v0} at version 0); "
                        f"UDFs ran on {', '.join(pythons)}")


def udf_pythons(spark) -> list[str]:
    """The interpreters that ran a pandas UDF over 2 partitions, each with its xgboost version
    (the batch scorer's dependency): on a cluster, the executors' Python."""

    def probe(batches):
        import sys

        import pandas as pd
        import xgboost

        for _ in batches:
            pass
        yield pd.DataFrame({"python": [f"{sys.executable} (xgboost {xgboost.__version__})"]})

    found = spark.range(0, 4, 1, 2).mapInPandas(probe, "python string").distinct().collect()
    return sorted(row.python for row in found)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="Delta table URI to write (default: <lake>/ops/smoke)")


SPEC = StageSpec(
    name="smoke",
    description="engine smoke test: write, append and read back a small Delta table",
    run=smoke,
    dated=False,
    add_options=add_options,
)
