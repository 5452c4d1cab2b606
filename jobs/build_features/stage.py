"""Build the daily feature snapshots: silver -> gold.customer_features, gold.terminal_features.

    spark-submit jobs/build_features/main.py --date 2018-05-01
    spark-submit jobs/build_features/main.py --from 2018-04-01 --to 2018-09-30   # backfill
    cardscore run features --date 2018-05-01

The snapshot of day D describes the data strictly before D (features/README.md). A run reads
only the look-back its days need, computes a whole range in one pass (in chunks of
`features.backfill_chunk_days`), stages the new rows, gates them with Great Expectations and
only then replaces those days in the gold tables (replaceWhere): re-running a day gives the
same rows and never duplicates them.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

from cardscore.core import catalog
from cardscore.core.config.settings import join_uri
from cardscore.core.errors import MissingInput, StageFailed
from cardscore.core.lake import discard_staging
from cardscore.core.logs import get_logger
from cardscore.core.stage import Input, JobContext, StageCall, StageOutcome, StageSpec
from cardscore.features.definitions import (
    CREATED_AT,
    CUSTOMER_KEY,
    CUSTOMER_LOOKBACK_DAYS,
    DELAY_DAYS,
    SNAPSHOT_DATE,
    TERMINAL_KEY,
    TERMINAL_LOOKBACK_DAYS,
)
from cardscore.jobs.build_features.report import summary

STAGE = "features"
CUSTOMER_SUITE = "gold_customer_features"
TERMINAL_SUITE = "gold_terminal_features"
log = get_logger("jobs.build_features")

# progress(days_done, days_total) after each pass of a range.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class FeaturesReport:
    """What one snapshot day published."""

    day: date
    customer_rows: int
    terminal_rows: int
    customer_version: int | None  # gold table versions after the pass that wrote the day
    terminal_version: int | None
    pass_seconds: float  # wall time of the pass (shared by every day of a range pass)
    pass_days: int

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out


def build_features_day(ctx: JobContext, day: date) -> FeaturesReport:
    """Build, gate and publish the snapshot of `day` (the nightly pipeline's entry point)."""
    return build_features_range(ctx, day, day)[0]


def build_features_range(
    ctx: JobContext, first: date, last: date, progress: ProgressFn | None = None
) -> list[FeaturesReport]:
    """Build every snapshot day in [first, last], `features.backfill_chunk_days` per pass."""
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    chunk = ctx.settings.features.backfill_chunk_days
    total = (last - first).days + 1
    reports: list[FeaturesReport] = []
    start = first
    while start <= last:
        end = min(last, start + timedelta(days=chunk - 1))
        reports.extend(_build_pass(ctx, start, end))
        if progress:
            progress(len(reports), total)
        start = end + timedelta(days=1)
    return reports


# ------------------------------------------------------------------------------ one pass


def _build_pass(ctx: JobContext, first: date, last: date) -> list[FeaturesReport]:
    from pyspark.sql import functions as F

    from cardscore.expectations.gate import gate
    from cardscore.features.transform import (
        active_entity_count,
        customer_snapshots,
        terminal_snapshots,
    )

    started = time.perf_counter()
    run_id = f"{first.isoformat()}_{last.isoformat()}_{uuid.uuid4().hex[:8]}"
    transactions, labels = _inputs(ctx, first, last)
    created_at = datetime.now(UTC).replace(microsecond=0)

    def with_created_at(df):
        columns = [c for c in df.columns if c != SNAPSHOT_DATE]
        return df.select(*columns, F.lit(created_at).alias(CREATED_AT), SNAPSHOT_DATE)

    built = {
        catalog.CUSTOMER_FEATURES: with_created_at(customer_snapshots(transactions, first, last)),
        catalog.TERMINAL_FEATURES: with_created_at(
            terminal_snapshots(transactions, labels, first, last)
        ),
    }
    expected = {
        catalog.CUSTOMER_FEATURES: active_entity_count(
            transactions, CUSTOMER_KEY, 1, CUSTOMER_LOOKBACK_DAYS, first, last
        ),
        catalog.TERMINAL_FEATURES: active_entity_count(
            transactions, TERMINAL_KEY, DELAY_DAYS + 1, TERMINAL_LOOKBACK_DAYS, first, last
        ),
    }
    suites = {catalog.CUSTOMER_FEATURES: CUSTOMER_SUITE, catalog.TERMINAL_FEATURES: TERMINAL_SUITE}

    staging = _staging_root(ctx, run_id)
    try:
        # Write-audit-publish: stage, gate the staged rows, then replace the days in gold.
        staged = {}
        for table, df in built.items():
            uri = join_uri(staging, table.replace(".", "_"))
            df.write.mode("overwrite").parquet(uri)
            staged[table] = ctx.spark.read.parquet(uri)
        for table, df in list(staged.items()):
            rows = int(expected[table].collect()[0]["rows"])
            if df.count() == 0:
                # Nothing active (e.g. the world's first day). Engines write no file for an
                # empty frame, so publish the computed (empty) frame: it carries the schema.
                if rows:
                    raise StageFailed(
                        STAGE, f"{table}: no snapshot rows computed for {first}..{last} but "
                        f"{rows} active entities expected"
                    )
                log.warning("features.empty_pass", table=table, first=first.isoformat(), last=last.isoformat())
                staged[table] = built[table]
                continue
            gate(
                df,
                suites[table],
                ctx.settings,
                stage=STAGE,
                run_name=f"features-{run_id}-{table.split('.')[-1]}",
                parameters={"expected_rows": rows},
            )
        predicate = f"{SNAPSHOT_DATE} >= '{first.isoformat()}' AND {SNAPSHOT_DATE} <= '{last.isoformat()}'"
        versions, per_day = {}, {}
        for table, df in staged.items():
            versions[table] = ctx.lake.replace_where(df, table, predicate, partition_by=[SNAPSHOT_DATE])
            per_day[table] = {
                row[SNAPSHOT_DATE]: int(row["count"])
                for row in df.groupBy(SNAPSHOT_DATE).count().collect()
            }
    finally:
        discard_staging(staging, STAGE)

    seconds = time.perf_counter() - started
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    reports = [
        FeaturesReport(
            day=day,
            customer_rows=per_day[catalog.CUSTOMER_FEATURES].get(day, 0),
            terminal_rows=per_day[catalog.TERMINAL_FEATURES].get(day, 0),
            customer_version=versions[catalog.CUSTOMER_FEATURES],
            terminal_version=versions[catalog.TERMINAL_FEATURES],
            pass_seconds=round(seconds, 3),
            pass_days=len(days),
        )
        for day in days
    ]
    log.info(
        "features.published",
        first=first.isoformat(),
        last=last.isoformat(),
        customer_rows=sum(r.customer_rows for r in reports),
        terminal_rows=sum(r.terminal_rows for r in reports),
        customer_version=versions[catalog.CUSTOMER_FEATURES],
        terminal_version=versions[catalog.TERMINAL_FEATURES],
        seconds=round(seconds, 3),
    )
    return reports


def _inputs(ctx: JobContext, first: date, last: date):
    """The silver look-back the days need (customers [first-30, last), terminals and labels
    [first-37, last)), after checking that silver is complete up to the day before `last`."""
    from pyspark.sql import functions as F

    from cardscore.schemas.contracts import SILVER_LABEL

    lake, cfg = ctx.lake, ctx.settings.features
    if not lake.exists(catalog.SILVER_TRANSACTIONS):
        raise MissingInput(
            STAGE,
            f"{catalog.SILVER_TRANSACTIONS} does not exist at {lake.uri(catalog.SILVER_TRANSACTIONS)}; "
            "run ingest first",
        )
    lo = first - timedelta(days=max(CUSTOMER_LOOKBACK_DAYS, TERMINAL_LOOKBACK_DAYS))
    hi = last - timedelta(days=1)
    transactions = lake.read(catalog.SILVER_TRANSACTIONS).where(
        F.col("tx_date").between(F.lit(lo), F.lit(hi))
    )
    if cfg.require_previous_day:
        _check_complete(ctx, transactions, first, last)
    if lake.exists(catalog.SILVER_LABELS):
        labels = lake.read(catalog.SILVER_LABELS).where(
            F.col("reported_date").between(F.lit(lo), F.lit(hi))
        )
    elif cfg.require_labels:
        raise MissingInput(
            STAGE,
            f"{catalog.SILVER_LABELS} does not exist at {lake.uri(catalog.SILVER_LABELS)}; run "
            "ingest of the label feed first (or set features.require_labels: false)",
        )
    else:
        log.warning("features.no_labels", table=catalog.SILVER_LABELS)
        labels = ctx.spark.createDataFrame([], SILVER_LABEL.spark_schema())
    return transactions, labels


def _check_complete(ctx: JobContext, lookback, first: date, last: date) -> None:
    """Every day of the look-back must have transactions, from the first day silver has."""
    from pyspark.sql import functions as F

    present = {row["tx_date"] for row in lookback.select("tx_date").distinct().collect()}
    if not present:
        earlier = (
            ctx.lake.read(catalog.SILVER_TRANSACTIONS)
            .where(F.col("tx_date") < F.lit(first - timedelta(days=TERMINAL_LOOKBACK_DAYS + 1)))
            .limit(1)
            .count()
        )
        if earlier:
            raise MissingInput(
                STAGE,
                f"{catalog.SILVER_TRANSACTIONS} has no transactions in the look-back of "
                f"{first}..{last}; run ingest for those days first",
            )
        log.warning("features.empty_lookback", first=first.isoformat(), last=last.isoformat())
        return
    start = min(present)  # the look-back's first day, or the first day of data if later
    needed = [start + timedelta(days=i) for i in range((last - start).days)]
    missing = [d for d in needed if d not in present]
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MissingInput(
            STAGE,
            f"{catalog.SILVER_TRANSACTIONS} has no transactions on {shown}; the snapshot of a day "
            "needs every earlier day: run ingest for them first (or set "
            "features.require_previous_day: false)",
        )


def _staging_root(ctx: JobContext, run_id: str) -> str:
    base = ctx.settings.features.staging or join_uri(ctx.settings.lake_root, "_staging")
    return join_uri(base, "features", run_id)


# ------------------------------------------------------------------------------ the stage


def snapshot_missing(ctx: JobContext, day: date) -> bool:
    """True if neither gold feature table has a row for snapshot `day`. An empty snapshot (no
    active entity, e.g. the world's first day) also reads as missing: rebuilding it is cheap."""
    from pyspark.sql import functions as F

    for table in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES):
        if ctx.lake.exists(table) and ctx.lake.read(table).where(F.col(SNAPSHOT_DATE) == F.lit(day)).limit(1).count():
            return False
    return True


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fill-previous", action="store_true",
        help="also build the snapshot of the day before the first day when it is missing (the "
        "nightly does: the night of D builds D+1, and D too on the first night or after a gap, "
        "because D's transactions are scored with it)",
    )


def run(call: StageCall) -> list[StageOutcome]:
    """The snapshots of the call's days in one pass (and, with `fill_previous`, of the day
    before them when it is missing)."""
    ctx, days = call.ctx, list(call.days)
    previous = days[0] - timedelta(days=1)
    first = previous if call.options.get("fill_previous") and snapshot_missing(ctx, previous) else days[0]
    progress = (lambda done, total: call.phase(f"{done}/{total} days")) if call.progress else None
    reports = build_features_range(ctx, first, days[-1], progress)
    by_day = {r.day: r for r in reports}
    extra = [r for r in reports if r.day not in days]
    outcomes = []
    for day in days:
        report = by_day[day]
        built = [*extra, report] if day == days[0] else [report]
        outcomes.append(StageOutcome(
            outputs={catalog.CUSTOMER_FEATURES: report.customer_version,
                     catalog.TERMINAL_FEATURES: report.terminal_version},
            details={"snapshots": [r.to_dict() for r in built]},
            message=", ".join(f"{r.day}: {r.customer_rows} customers, {r.terminal_rows} terminals" for r in built),
            report=report,
        ))
    return outcomes


SPEC = StageSpec(
    name=STAGE,
    description="gold feature snapshots of the day (or each day of a range, in one pass), gated",
    run=run,
    one_pass=True,
    add_options=add_options,
    # The snapshot of X reads the look-back before X (the night of D builds X = D+1).
    inputs=(Input(catalog.SILVER_TRANSACTIONS, "tx_date", -max(CUSTOMER_LOOKBACK_DAYS, TERMINAL_LOOKBACK_DAYS) - 1, -1),
            Input(catalog.SILVER_LABELS, "reported_date", -max(CUSTOMER_LOOKBACK_DAYS, TERMINAL_LOOKBACK_DAYS) - 1, -1)),
    outputs=(catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES),
    gates=(CUSTOMER_SUITE, TERMINAL_SUITE),
    summarize=summary,
)
