"""Fresh features of every transaction of a day: silver -> gold.fresh_features.

    spark-submit jobs/fresh_features/main.py --date 2018-05-01
    cardscore run fresh_features --from 2018-04-01 --to 2018-05-01

Each transaction of day D gets the exact point-in-time values of `features.fresh.FRESH_FEATURES`
at its own event time (features/README.md, "Fresh features"), from silver transactions and
every label report (`silver.label_reports`) of [D-30, D]. Write-audit-publish: the day's rows
are staged as Parquet, gated by the `gold_fresh_features` suite (one row per silver
transaction of D, every column non-null, counts >= 0) and only then published by replaceWhere
on `tx_date = D`: re-running a day gives the same rows and never duplicates them; a failed gate
publishes nothing (`GateFailed`, exit code 1).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import date

from cardscore.core import catalog
from cardscore.core.config.settings import join_uri
from cardscore.core.errors import MissingInput
from cardscore.core.lake import discard_staging
from cardscore.core.logs import get_logger
from cardscore.core.stage import Input, JobContext, StageCall, StageOutcome, StageSpec
from cardscore.jobs.fresh_features.transforms import LOOKBACK_DAYS, day_fresh_features, lookback

STAGE = "fresh_features"
SUITE = "gold_fresh_features"
log = get_logger("jobs.fresh_features")


@dataclass(frozen=True)
class FreshReport:
    """What one day published."""

    day: date
    rows: int  # = the day's silver transactions
    version: int | None  # gold.fresh_features after the write

    def to_dict(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat()}


def fresh_features_day(ctx: JobContext, day: date) -> FreshReport:
    """Compute and publish day `day`; MissingInput when silver has no transactions table."""
    from pyspark.sql import functions as F

    lake = ctx.lake
    if not lake.exists(catalog.SILVER_TRANSACTIONS):
        raise MissingInput(f"{catalog.SILVER_TRANSACTIONS} does not exist: run ingest first")
    first, last = lookback(day)
    between = (F.lit(first.isoformat()).cast("date"), F.lit(last.isoformat()).cast("date"))
    transactions = lake.read(catalog.SILVER_TRANSACTIONS).where(F.col("tx_date").between(*between))
    if lake.exists(catalog.SILVER_LABEL_REPORTS):
        reports = lake.read(catalog.SILVER_LABEL_REPORTS).where(F.col("reported_date").between(*between))
    else:  # no label has been ingested yet: no fraud is reported
        reports = ctx.spark.createDataFrame(
            [], "transaction_id long, is_fraud boolean, reported_time timestamp")
    rows = day_fresh_features(transactions, reports, day)
    expected = transactions.where(F.col("tx_date") == between[1]).count()
    staging = join_uri(ctx.settings.lake_root, f"_staging/{STAGE}/{day:%Y%m%d}-{uuid.uuid4().hex[:8]}")
    try:
        rows.write.mode("overwrite").parquet(staging)
        # Engines write no file for an empty frame: a day without transactions publishes the
        # computed (empty) frame, which carries the schema.
        staged = ctx.spark.read.parquet(staging) if expected else rows
        from cardscore.expectations.gate import gate

        gate(staged, SUITE, ctx.settings, stage=STAGE, run_name=f"{STAGE}-{day.isoformat()}",
             parameters={"expected_rows": expected})
        lake.replace_where(staged, catalog.FRESH_FEATURES, f"tx_date = DATE'{day.isoformat()}'",
                           partition_by=["tx_date"])
    finally:
        discard_staging(staging, STAGE)
    count = lake.read(catalog.FRESH_FEATURES).where(F.col("tx_date") == between[1]).count()
    report = FreshReport(day=day, rows=count, version=lake.version(catalog.FRESH_FEATURES))
    log.info("fresh_features.published", **report.to_dict())
    return report


def run(call: StageCall) -> list[StageOutcome]:
    """The stage: each day of the call, in order."""
    outcomes = []
    for day in call.days:
        report = fresh_features_day(call.ctx, day)
        outcomes.append(StageOutcome(
            inputs={t: call.ctx.lake.version(t) for t in (catalog.SILVER_TRANSACTIONS, catalog.SILVER_LABEL_REPORTS)},
            outputs={catalog.FRESH_FEATURES: report.version},
            details=report.to_dict(),
            message=f"{report.rows} transactions of {day}",
            report=report,
        ))
    return outcomes


SPEC = StageSpec(
    name=STAGE,
    description="fresh point-in-time features of every transaction of the day",
    run=run,
    one_pass=True,
    inputs=(Input(catalog.SILVER_TRANSACTIONS, "tx_date", -LOOKBACK_DAYS, 0),
            Input(catalog.SILVER_LABEL_REPORTS, "reported_date", -LOOKBACK_DAYS, 0)),
    outputs=(catalog.FRESH_FEATURES,),
)
