"""Subprocess side of `tests.support.classic.run_on_classic` (classic local[2], no Delta)."""

from __future__ import annotations

import importlib
import json
import sys


def main() -> None:
    spec = json.loads(sys.argv[1])
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")  # test harness only; job code never touches sparkContext
    module_name, func_name = spec["function"].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    frames = {name: spark.read.parquet(path) for name, path in spec["inputs"].items()}
    result = func(spark, **frames, **spec["kwargs"])
    result.toPandas().to_parquet(spec["out"], index=False)
    spark.stop()


if __name__ == "__main__":
    main()
