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

A range (`--from/--to`, a backfill) is computed `features.backfill_chunk_days` days per pass:
one read of the pass's look-back [first-30, last], one window pass, one gate and one
replaceWhere of the pass's days, which give exactly the rows of the day-by-day runs (a
transaction's values depend on its own event time only; tested).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from cardscore.core import catalog
from cardscore.core.config.settings import join_uri
from cardscore.core.errors import MissingInput
from cardscore.core.lake import discard_staging
from cardscore.core.logs import get_logger
from cardscore.core.stage import SKIPPED, Input, JobContext, StageCall, StageOutcome, StageSpec
from cardscore.jobs.fresh_features.transforms import LOOKBACK_DAYS, lookback, range_fresh_features

if TYPE_CHECKING:
    from cardscore.core.config import Settings

STAGE = "fresh_features"
SUITE = "gold_fresh_features"
log = get_logger("jobs.fresh_features")
ProgressFn = Callable[[int, int], None]  # (days done, days in all)


@dataclass(frozen=True)
class FreshReport:
    """What one day published."""

    day: date
    rows: int  # = the day's silver transactions
    version: int | None  # gold.fresh_features after the write
    pass_days: int = 1  # days computed in the same pass (one read, one gate, one commit)
    pass_seconds: float | None = None  # that pass's time

    def to_dict(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat()}


def fresh_features_day(ctx: JobContext, day: date) -> FreshReport:
    """Compute and publish day `day`; MissingInput when silver has no transactions table."""
    return fresh_features_range(ctx, day, day)[0]


def fresh_features_range(
    ctx: JobContext, first: date, last: date, progress: ProgressFn | None = None
) -> list[FreshReport]:
    """Compute and publish every day of [first, last], `features.backfill_chunk_days` days per
    pass (each pass reads its look-back once: a backfill does not re-read 31 days per day)."""
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    chunk = ctx.settings.features.backfill_chunk_days
    total = (last - first).days + 1
    reports: list[FreshReport] = []
    start = first
    while start <= last:
        end = min(last, start + timedelta(days=chunk - 1))
        reports.extend(_fresh_pass(ctx, start, end))
        if progress:
            progress(len(reports), total)
        start = end + timedelta(days=1)
    return reports


def _fresh_pass(ctx: JobContext, first: date, last: date) -> list[FreshReport]:
    from pyspark.sql import functions as F

    from cardscore.expectations.gate import gate

    started = time.perf_counter()
    lake = ctx.lake
    if not lake.exists(catalog.SILVER_TRANSACTIONS):
        raise MissingInput(f"{catalog.SILVER_TRANSACTIONS} does not exist: run ingest first")
    read_from, read_to = lookback(first, last)
    between = (F.lit(read_from.isoformat()).cast("date"), F.lit(read_to.isoformat()).cast("date"))
    transactions = lake.read(catalog.SILVER_TRANSACTIONS).where(F.col("tx_date").between(*between))
    if lake.exists(catalog.SILVER_LABEL_REPORTS):
        reports = lake.read(catalog.SILVER_LABEL_REPORTS).where(F.col("reported_date").between(*between))
    else:  # no label has been ingested yet: no fraud is reported
        reports = ctx.spark.createDataFrame(
            [], "transaction_id long, is_fraud boolean, reported_time timestamp")
    rows = range_fresh_features(transactions, reports, first, last)
    in_range = F.col("tx_date").between(F.lit(first.isoformat()).cast("date"), F.lit(last.isoformat()).cast("date"))
    expected = transactions.where(in_range).count()
    staging = join_uri(ctx.settings.lake_root, f"_staging/{STAGE}/{first:%Y%m%d}-{last:%Y%m%d}-{uuid.uuid4().hex[:8]}")
    try:
        rows.write.mode("overwrite").parquet(staging)
        # Engines write no file for an empty frame: a range without transactions publishes the
        # computed (empty) frame, which carries the schema.
        staged = ctx.spark.read.parquet(staging) if expected else rows
        gate(staged, SUITE, ctx.settings, stage=STAGE, run_name=f"{STAGE}-{first.isoformat()}-{last.isoformat()}",
             parameters={"expected_rows": expected})
        lake.replace_where(staged, catalog.FRESH_FEATURES,
                           f"tx_date >= DATE'{first.isoformat()}' AND tx_date <= DATE'{last.isoformat()}'",
                           partition_by=["tx_date"])
    finally:
        discard_staging(staging, STAGE)
    per_day = {row["tx_date"]: int(row["count"]) for row in
               lake.read(catalog.FRESH_FEATURES).where(in_range).groupBy("tx_date").count().collect()}
    version = lake.version(catalog.FRESH_FEATURES)
    seconds = round(time.perf_counter() - started, 3)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    reports = [FreshReport(day=d, rows=per_day.get(d, 0), version=version, pass_days=len(days),
                           pass_seconds=seconds) for d in days]
    log.info("fresh_features.published", first=first.isoformat(), last=last.isoformat(),
             rows=sum(per_day.values()), version=version, seconds=seconds)
    return reports


def needed(settings: Settings) -> bool:
    """Whether the configured model input reads fresh features (`training.feature_set`)."""
    from cardscore.features.feature_sets import FEATURE_SETS

    chosen = FEATURE_SETS.get(settings.training.feature_set)
    return chosen is None or chosen.uses_fresh  # an unknown set: build them, training says why


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--if-needed", action="store_true",
                        help="skip unless training.feature_set reads fresh features (the nightly's choice)")


def run(call: StageCall) -> list[StageOutcome]:
    """The stage: the call's days in passes of `features.backfill_chunk_days` (the runner hands
    a range over in one call: `one_pass`); consecutive days share a pass."""
    if call.options.get("if_needed") and not needed(call.ctx.settings):
        message = f"training.feature_set {call.ctx.settings.training.feature_set} reads no fresh features"
        return [StageOutcome(status=SKIPPED, message=message, details={"reason": "not_needed"}) for _ in call.days]
    outcomes = []
    for first, last in _consecutive(call.days):
        for report in fresh_features_range(call.ctx, first, last):
            outcomes.append(StageOutcome(
                inputs={t: call.ctx.lake.version(t) for t in (catalog.SILVER_TRANSACTIONS, catalog.SILVER_LABEL_REPORTS)},
                outputs={catalog.FRESH_FEATURES: report.version},
                details=report.to_dict(),
                message=f"{report.rows} transactions of {report.day}",
                report=report,
            ))
    return outcomes


def _consecutive(days: Sequence[date]) -> list[tuple[date, date]]:
    """Runs of consecutive days, in order: [(first, last), ...]."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


SPEC = StageSpec(
    name=STAGE,
    description="fresh point-in-time features of every transaction of the day",
    run=run,
    one_pass=True,
    inputs=(Input(catalog.SILVER_TRANSACTIONS, "tx_date", -LOOKBACK_DAYS, 0),
            Input(catalog.SILVER_LABEL_REPORTS, "reported_date", -LOOKBACK_DAYS, 0)),
    outputs=(catalog.FRESH_FEATURES,),
    gates=(SUITE,),
    add_options=add_options,
)
