"""Engine smoke test: write a small Delta table, append to it, read it back.

Use it to check that a cluster set-up works before running the pipeline:
    SPARK_REMOTE=sc://127.0.0.1:15002 spark-submit jobs/smoke.py --out file:///tmp/smoke
    spark-submit --packages io.delta:delta-spark_2.13:4.1.0 ... jobs/smoke.py --out s3://bucket/smoke
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cardscore.core.logs import get_logger
from cardscore.core.stage import JobContext, job_parser, run_job

log = get_logger("jobs.smoke")


def smoke(ctx: JobContext, args: argparse.Namespace) -> None:
    from pyspark.sql import functions as F

    spark = ctx.spark
    out = args.out or ctx.lake.uri("ops.smoke")
    df = spark.range(100).withColumn("bucket", (F.col("id") % 4).cast("int"))
    df.write.format("delta").mode("overwrite").partitionBy("bucket").save(out)
    spark.range(100, 110).withColumn("bucket", F.lit(0)).write.format("delta").mode("append").save(out)
    rows = spark.read.format("delta").load(out).count()
    v0 = spark.read.format("delta").option("versionAsOf", 0).load(out).count()
    if (rows, v0) != (110, 100):
        raise RuntimeError(f"smoke check read back {rows} rows (v0: {v0}); expected 110 (v0: 100)")
    log.info("smoke.ok", table=out, rows=rows, version0_rows=v0)
    print(f"smoke ok: {out} has {rows} rows ({v0} at version 0)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0], dated=False)
    parser.add_argument("--out", help="Delta table URI to write (default: <lake>/ops/smoke)")
    return run_job("smoke", smoke, argv, dated=False, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
