"""The monitoring table `ops.monitoring` (one row per measured value, partitioned by day):
write a day's rows, read days back (reports, the retraining trigger)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import pandas as pd

from cardscore.monitoring.metrics import MetricRow

if TYPE_CHECKING:
    from cardscore.core.stage import JobContext

PARTITION = "day"
MONITORING_SCHEMA = (
    "metric string, subject string, scored_day date, model_version string, value double, "
    "threshold double, direction string, violated boolean, details string, run_id string, "
    "computed_at timestamp, day date"
)


def write_rows(ctx: JobContext, day: date, rows: Sequence[MetricRow], run_id: str) -> int | None:
    """The day's rows replace day D in the monitoring table."""
    now = datetime.now(UTC)

    def number(value: float | None) -> float | None:  # classic Spark refuses an int in a double column
        return None if value is None else float(value)

    data = [
        (r.metric, r.subject, r.scored_day, r.model_version, number(r.value), number(r.threshold), r.direction,
         r.violated,
         json.dumps(r.details, sort_keys=True, default=str), run_id, now, day)
        for r in rows
    ]
    df = ctx.spark.createDataFrame(data, MONITORING_SCHEMA)
    table = ctx.settings.monitoring.output_table
    return ctx.lake.replace_where(df, table, f"{PARTITION} = '{day.isoformat()}'", partition_by=[PARTITION])


def read_rows(ctx: JobContext, first: date, last: date) -> pd.DataFrame:
    """Monitoring rows of days [first, last] (empty frame when the table does not exist)."""
    from pyspark.sql import functions as F

    table = ctx.settings.monitoring.output_table
    if not ctx.lake.exists(table):
        return pd.DataFrame(columns=[c.split()[0] for c in MONITORING_SCHEMA.split(", ")])
    return (
        ctx.lake.read(table)
        .where((F.col(PARTITION) >= F.lit(first)) & (F.col(PARTITION) <= F.lit(last)))
        .drop("computed_at")
        .toPandas()
    )
