"""The nightly pipeline for day D: ingest -> features -> materialize -> score -> monitor.

    spark-submit jobs/nightly.py --date yesterday
    spark-submit jobs/nightly.py --from 2018-04-01 --to 2018-04-30      # backfill, day by day
    python jobs/nightly.py --date 2018-05-01 --from-stage score          # resume from a stage
    cardscore nightly --date 2018-05-01                                  # the same, with progress

The night after day D closed:
1. ingest     landing files of D (transactions and the label feed) -> bronze -> silver, gated;
2. features   the snapshot of D+1 (all data up to the end of D; tomorrow's stream needs it), and
              the snapshot of D too if an earlier night did not build it (first night, gaps);
              gated before publishing;
3. materialize the snapshot of D+1 into the online store, for tomorrow's stream scorer;
4. score      D's transactions with the champion (skipped, not failed, while there is none),
              gated before publishing;
5. monitor    drift, delayed-label performance and freshness for D (`jobs/monitor.py`), when
              present and enabled in `pipeline.monitoring_enabled`.

Every gate sits inside its stage, so a failed gate stops the night at that stage and nothing
downstream runs. `cardscore.core.pipeline.PipelineRunner` retries unexpected errors with backoff,
records every stage in the `ops.pipeline_runs` Delta ledger, and resumes a re-run of D at the
first stage that did not succeed (`--force` re-runs everything). A range stops at the first
failed day: later days depend on it. Exit codes: 0 ok, 1 a stage failed, 2 usage or engine error,
3 monitoring raised an alert (the night's data are published).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from datetime import date, timedelta

from cardscore.core import catalog
from cardscore.core.logs import get_logger
from cardscore.core.pipeline import (
    SKIPPED,
    SUCCEEDED,
    DayResult,
    PipelineRunner,
    Reporter,
    Stage,
    StageOutcome,
)
from cardscore.core.stage import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    JobContext,
    days_from_args,
    job_parser,
)

PIPELINE = "nightly"
EXIT_ALERT = 3  # the night published its data, but monitoring raised an alert
log = get_logger("jobs.nightly")


def ingest_stage(ctx: JobContext, day: date) -> StageOutcome:
    from cardscore.jobs.ingest import pipeline_stage

    return pipeline_stage(ctx, day)


def snapshot_missing(ctx: JobContext, day: date) -> bool:
    """True if neither gold feature table has a row for snapshot `day`. An empty snapshot (no
    active entity, e.g. the world's first day) also reads as missing: rebuilding it is cheap."""
    from cardscore.features.definitions import SNAPSHOT_DATE
    from pyspark.sql import functions as F

    for table in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES):
        if ctx.lake.exists(table) and ctx.lake.read(table).where(F.col(SNAPSHOT_DATE) == F.lit(day)).limit(1).count():
            return False
    return True


def features_stage(ctx: JobContext, day: date) -> StageOutcome:
    """Snapshots of D+1, and of D when missing, in one pass."""
    from cardscore.jobs.build_features import build_features_range

    first = day if snapshot_missing(ctx, day) else day + timedelta(days=1)
    reports = build_features_range(ctx, first, day + timedelta(days=1))
    last = reports[-1]
    return StageOutcome(
        outputs={catalog.CUSTOMER_FEATURES: last.customer_version, catalog.TERMINAL_FEATURES: last.terminal_version},
        details={"snapshots": [r.to_dict() for r in reports]},
        message=", ".join(f"{r.day}: {r.customer_rows} customers, {r.terminal_rows} terminals" for r in reports),
    )


def materialize_stage(ctx: JobContext, day: date) -> StageOutcome:
    from cardscore.features.store import materialize

    tomorrow = day + timedelta(days=1)
    report = materialize(ctx.settings, ctx.spark, tomorrow, tomorrow)
    return StageOutcome(
        inputs={catalog.CUSTOMER_FEATURES: ctx.lake.version(catalog.CUSTOMER_FEATURES),
                catalog.TERMINAL_FEATURES: ctx.lake.version(catalog.TERMINAL_FEATURES)},
        details=report.to_dict(),
        message=f"{report.online_store} serves {tomorrow}: {report.customer_rows} customers, "
        f"{report.terminal_rows} terminals",
    )


def score_stage(ctx: JobContext, day: date) -> StageOutcome:
    from cardscore.jobs.score_batch import pipeline_stage

    return pipeline_stage(ctx, day)


def monitor_stage(ctx: JobContext, day: date) -> StageOutcome:
    """`jobs/monitor.py`'s stage when it exists and monitoring is enabled; else skipped."""
    if not ctx.settings.pipeline.monitoring_enabled:
        return StageOutcome(status=SKIPPED, message="monitoring disabled (pipeline.monitoring_enabled)")
    try:
        monitor = importlib.import_module("cardscore.jobs.monitor")
    except ModuleNotFoundError as exc:
        if exc.name != "cardscore.jobs.monitor":
            raise
        return StageOutcome(status=SKIPPED, message="no monitoring job installed")
    return monitor.pipeline_stage(ctx, day)


NIGHTLY_STAGES: tuple[Stage, ...] = (
    Stage("ingest", "landing -> bronze -> silver (transactions, labels), gated", ingest_stage),
    Stage("features", "gold feature snapshots of D+1 (and D if missing), gated", features_stage),
    Stage("materialize", "snapshot of D+1 into the online store", materialize_stage),
    Stage("score", "batch predictions of D by the champion, gated", score_stage),
    Stage("monitor", "drift, delayed-label performance, freshness, alerts", monitor_stage),
)


def alerts_of(result: DayResult) -> list[dict]:
    """Alerts the monitoring stage reported for the day (its details' `alerts` list)."""
    for record in result.records:
        if record.stage == "monitor" and record.status == SUCCEEDED and record.outcome is not None:
            return list(record.outcome.details.get("alerts") or [])
    return []


def run_nightly(
    ctx: JobContext,
    days: Sequence[date],
    force: bool = False,
    from_stage: str | None = None,
    reporter: Reporter | None = None,
) -> list[DayResult]:
    """Run the nightly stages for each day in order; stop after the first day that fails."""
    runner = PipelineRunner(ctx, NIGHTLY_STAGES, PIPELINE, reporter=reporter)
    results: list[DayResult] = []
    for day in days:
        result = runner.run_day(day, force=force, from_stage=from_stage)
        results.append(result)
        if result.failed:
            log.error("nightly.stopped", day=day.isoformat(), stage=result.failed.stage, error=result.failed.error)
            break
    return results


def exit_code(results: Sequence[DayResult]) -> int:
    if any(r.failed for r in results):
        return EXIT_FAILED
    if any(alerts_of(r) for r in results):
        return EXIT_ALERT
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = job_parser(__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="re-run every stage, even those the ledger records as done")
    p.add_argument("--from-stage", choices=[s.name for s in NIGHTLY_STAGES],
                   help="start at this stage (earlier stages are taken as done)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from cardscore.core.config import ConfigError, load_settings
    from cardscore.core.engine import EngineError, get_spark, stop_spark
    from cardscore.core.lake import Lake
    from cardscore.core.logs import configure_logging

    args = parser().parse_args(argv)
    try:
        days = [d + timedelta(days=args.shift_days) for d in days_from_args(args)]
        settings = load_settings(args.config)
    except (ValueError, ConfigError) as exc:
        configure_logging()
        log.error("job.usage_error", job=PIPELINE, error=str(exc))
        print(f"usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.logging.level, settings.logging.format)
    try:
        spark = get_spark(settings, remote=args.remote)
    except EngineError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        results = run_nightly(JobContext(settings, spark, Lake(spark, settings)), days,
                              force=args.force, from_stage=args.from_stage)
    finally:
        stop_spark()
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
