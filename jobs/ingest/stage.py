"""Ingest one landing day (or a range): landing -> bronze -> silver (+ quarantine), behind GX gates.

    spark-submit jobs/ingest/main.py --date 2018-04-01
    python jobs/ingest/main.py --from 2018-04-01 --to 2018-04-30
    cardscore run ingest --date 2018-04-01

All three run `SPEC` through `cardscore.core.runner`, which calls `ingest_day(ctx, day)`. For each feed (transactions, labels) of the day:

1. **list and read** the day's files (`<landing>/<feed>/date=D/*.jsonl`, hidden `.`/`_` files
   skipped) with pyarrow.fs; each file is streamed in blocks, split on `\\n` into numbered
   lines (1-based, file order: stable line numbers, exact bytes, and the SHA-256 from the same
   read) written to a Parquet file in the lake's staging area, which the engine reads: the
   driver holds one block at a time, never a day (`jobs.ingest.landing`). Not
   `spark.read.text`: on Sail one invalid UTF-8 byte fails the whole read, and its text reader
   drops the CR that must be rejected; `binaryFile` + an in-engine split is exact but 10x
   slower (bench/results/ingest.json, `parts`).
2. **bronze**: lines of files not yet loaded are written, with lineage, in one commit per feed
   (`replaceWhere` on the day and those files, so a crash before step 3 cannot duplicate them).
3. **load ledger** (`ops.ingest_loads`): one row per file: size, SHA-256, line count, load id.
   A file already in the ledger with the same hash is not loaded again; a file whose content
   changed after it was loaded stops the day with an error (landing files are immutable:
   deliver corrections as a new file, and supersede or retract the old one:
   jobs/ingest/corrections.py, `cardscore landing`).
4. **validate and classify** every line of the day's *surviving* files (not superseded or
   retracted) (`schemas.spark_validation`, `jobs/ingest/transforms.py`) into a staging Delta
   table `<lake>/_staging/ingest_<feed>_<yyyymmdd>`: the gates and the publish read this one
   materialised result. Records whose day is outside the window around the pipeline's clock
   (`ingest.day_window`, `pipeline.clock`) are rejected as `outside_window`.
5. **quarantine** (`quarantine.records`): the day's rejected lines replace the day's
   partition, with the rows quarantined earlier from withdrawn files kept as history. Written
   even when a gate then fails: they describe the input, not the output. A landing day
   outside the window stops here (`DayRefused`, exit code 1): nothing is published.
6. **gate**: per feed, `expectations/suites/landing_day.json` checks what became of the lines
   (an empty or missing day file, the share quarantined per reason and in all) and
   `silver_<feed>.json` the rows about to be published (keys, ranges, the landing day, row
   count = surviving lines - quarantined - duplicates - superseded, and against the median of
   the recent days). Any failure stops the day before anything is published (exit code 1),
   with a message that leads with the cause ("9,668 of 9,669 lines rejected: encoding").
7. **publish**: transactions replace the day's `tx_date` partition; labels are keyed by
   transaction_id across partitions: a first report is appended, a later re-report MERGEs
   over the older row, which moves to the new `reported_date` partition (the latest report
   wins; an older report, e.g. from re-running an earlier day, never replaces a newer one).
   A label row that came from a withdrawn file gives way to the day's surviving report, or
   else to the latest report of an earlier day (re-read from bronze), or else leaves silver.
   Every report of the day (accepted and superseded, `label_report_rows`) also replaces the
   day's `reported_date` partition of `silver.label_reports` (the fresh features count a
   fraud from its earliest report; features/README.md).
   A write whose result would equal the table's current content is skipped, so a re-run
   adds no table versions at all. Transactions and labels are two commits: a crash between
   them leaves the day half-published until the re-run, which completes it.

Lineage (load_id, ingested_at) comes from the ledger, not from the re-run, so re-running a day
gives identical silver and quarantine rows.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cardscore.core import catalog
from cardscore.core.config.settings import join_uri
from cardscore.core.errors import MissingInput, StageFailed
from cardscore.core.lake import delete_folder
from cardscore.core.logs import get_logger
from cardscore.core.stage import Input, JobContext, StageCall, StageOutcome, StageSpec
from cardscore.core.timing import PhaseTimer, Progress
from cardscore.expectations.gate import GateFailed, GateResult, validate
from cardscore.jobs.ingest.corrections import day_fingerprint, withdrawals
from cardscore.jobs.ingest.landing import (
    FileLoad,
    LandingFile,
    day_folder,
    lines_frame,
    list_landing_files,
    sql_string,
    stage_file_lines,
)
from cardscore.jobs.ingest.report import FeedReport, IngestReport, log_summary, summary_table
from cardscore.jobs.ingest.transforms import (
    ACCEPTED,
    DUPLICATE,
    FEEDS,
    QUARANTINED,
    STATUSES,
    SUPERSEDED,
    TRANSACTIONS,
    Feed,
    bronze_records,
    classify,
    label_report_rows,
    latest_reports,
    outcome_counts,
    quarantine_records,
    silver_rows,
)
from cardscore.schemas.contracts import QUARANTINE_RECORD
from cardscore.schemas.spark_validation import validate_lines

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from cardscore.core.config import Settings
    from cardscore.core.config.ingest import VolumeCheck
    from cardscore.core.lake import Lake

STAGE = "ingest"
log = get_logger("jobs.ingest")

LOADS_SCHEMA = (
    "source string, source_file string, landing_date date, size_bytes bigint, sha256 string, "
    "line_count bigint, load_id string, ingested_at timestamp"
)
TABLES = (
    catalog.BRONZE_TRANSACTIONS,
    catalog.BRONZE_LABELS,
    catalog.INGEST_LOADS,
    catalog.QUARANTINE,
    catalog.SILVER_TRANSACTIONS,
    catalog.SILVER_LABELS,
    catalog.SILVER_LABEL_REPORTS,
)

class IngestGateFailed(GateFailed):
    """A gate of the day failed; nothing of the day was published. The message leads with the
    cause (one line per failed feed), then the failed expectations."""

    def __init__(self, results: list[GateResult], staging: list[str], causes: list[str] | None = None) -> None:
        super().__init__(STAGE, results[0])
        self.results = results
        self.causes = list(causes or [])
        message = "; ".join(self.causes) + "\n" if self.causes else ""
        message += "\n".join(r.summary() for r in results)
        message += "\nsilver is unchanged; the day's rejected lines are in quarantine."
        message += "\nstaged rows kept for inspection: " + ", ".join(staging)
        self.args = (f"{STAGE}: {message}",)


class DayRefused(StageFailed):
    """The landing day is outside the days ingest accepts around the pipeline's clock."""

    def __init__(self, message: str) -> None:
        super().__init__(STAGE, message)



# --------------------------------------------------------------------------- the stage


def new_load_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def ingest_day(ctx: JobContext, day: date, progress: Progress | None = None) -> IngestReport:
    """Ingest one landing day; raises MissingInput, StageFailed, DayRefused or IngestGateFailed
    (exit 1)."""
    started = time.perf_counter()
    step = PhaseTimer(progress)
    lake, settings = ctx.lake, ctx.settings
    load_id = new_load_id()
    report = IngestReport(day, load_id, {}, versions_before=table_versions(lake))

    step("read")
    landing = settings.landing_root
    listed = {name: list_landing_files(landing, name, day, settings.ingest.file_suffix) for name in FEEDS}
    if all(files is None for files in listed.values()):
        raise MissingInput(
            STAGE,
            f"no landing folders for {day} under {landing} (expected "
            f"{', '.join(f'{name}/date={day.isoformat()}/' for name in FEEDS)}); "
            "run `cardscore simulate` or check lake.landing",
        )
    for name, files in listed.items():
        if files is None:
            log.warning("ingest.feed_missing", day=day.isoformat(), feed=name, folder=day_folder(landing, name, day))
    lines_root = lake.uri(f"_staging.ingest_lines_{day:%Y%m%d}_{load_id.replace('-', '_')}")
    try:
        return _ingest_read_day(ctx, day, report, listed, lines_root, started, step)
    finally:  # the staged lines are read by the engine before this returns
        delete_folder(lines_root)


def _ingest_read_day(
    ctx: JobContext, day: date, report: IngestReport, listed: dict[str, list[LandingFile] | None],
    lines_root: str, started: float, step: PhaseTimer,
) -> IngestReport:
    """Steps 2-7 of `ingest_day`, once the day's files are listed."""
    from pyspark.sql import functions as F

    lake, settings = ctx.lake, ctx.settings
    loads = _plan_loads(lake, listed, settings.landing_root, report.load_id, lines_root)
    withdrawn = withdrawals(lake, day)  # source_file -> who withdrew it, why, when
    window = day_window(settings)

    step("bronze")
    for feed in FEEDS.values():
        feed_loads = loads[feed.name]
        gone = [x for x in feed_loads if x.file.uri in withdrawn]
        report.feeds[feed.name] = FeedReport(
            feed.name,
            files=len(feed_loads),
            files_loaded=sum(1 for x in feed_loads if x.new),
            lines=sum(x.line_count for x in feed_loads),
            files_withdrawn=len(gone),
            withdrawn=sum(x.line_count for x in gone),
        )
        report.feeds[feed.name].bronze_rows_added = _write_bronze(ctx, feed, day, [x for x in feed_loads if x.new])
    _record_loads(ctx, day, [x for feed_loads in loads.values() for x in feed_loads if x.new])

    step("validate")
    staging: dict[str, str] = {}
    for feed in FEEDS.values():
        surviving = [x for x in loads[feed.name] if x.file.uri not in withdrawn]
        staging[feed.name] = _stage_day(ctx, feed, day, surviving, window)
        _count_outcomes(lake, staging[feed.name], report.feeds[feed.name])
    _check_bronze_counts(lake, day, loads, report)

    step("quarantine")
    quarantine = None
    for feed in FEEDS.values():
        rows = quarantine_records(lake.read(staging[feed.name]), feed, settings.ingest.quarantine_raw_max_chars)
        quarantine = rows if quarantine is None else quarantine.unionByName(rows)
    assert quarantine is not None
    if withdrawn and lake.exists(catalog.QUARANTINE):
        # What was quarantined from the withdrawn files stays, as history (read at a pinned
        # version: the replace below does not delete the files that version reads).
        kept = lake.read(catalog.QUARANTINE, version=lake.version(catalog.QUARANTINE)).where(
            (F.col("landing_date") == F.lit(day.isoformat()).cast("date")) & F.col("source_file").isin(list(withdrawn))
        )
        quarantine = quarantine.unionByName(kept)
    report.quarantine_changed = _replace_if_changed(
        lake, quarantine, catalog.QUARANTINE, "landing_date", day, QUARANTINE_RECORD.partition_by
    )

    refusal = refused_day(settings, day, window)
    if refusal:
        log_summary(report, outcome="refused")
        for table in staging.values():
            delete_folder(ctx.lake.uri(table))
        raise DayRefused(f"{refusal}; its {sum(f.lines for f in report.feeds.values()):,} lines are in bronze "
                         "and quarantined as outside_window, nothing was published")

    step("gate")
    gated = [feed for feed in FEEDS.values() if report.feeds[feed.name].surviving_lines
             or settings.ingest.gate.min_day_lines.get(feed.name, 0)]  # else nothing arrived, nor had to
    results: dict[str, list[GateResult]] = {feed.name: [] for feed in gated}
    for feed in gated:
        if feed.name in settings.ingest.gate.volume.feeds:
            report.feeds[feed.name].recent_median = _recent_median(lake, feed, day, settings.ingest.gate.volume)
    landing_result = _landing_gate(ctx, day, [report.feeds[f.name] for f in gated]) if gated else None
    for feed in gated:
        feed_report = report.feeds[feed.name]
        if landing_result is not None and not landing_result.success and landing_violated(feed_report, settings):
            results[feed.name].append(landing_result)
        if feed_report.surviving_lines:
            results[feed.name].append(_silver_gate(ctx, feed, day, lake.read(staging[feed.name]), feed_report))
        feed_report.gate = {"success": all(r.success for r in results[feed.name]),
                            "suites": [r.to_dict() for r in results[feed.name]]}
    failed_feeds = [name for name, feed_results in results.items() if not all(r.success for r in feed_results)]
    if landing_result is not None and not landing_result.success and not failed_feeds:
        failed_feeds = list(results)  # GX's verdict stands even where our reading of it found no feed
    if failed_feeds:
        docs = settings.ingest.gate.data_docs == "on_failure"  # a second run, for the Data Docs page
        failed: list[GateResult] = []
        if landing_result is not None and not landing_result.success:
            failed.append(_landing_gate(ctx, day, [report.feeds[f.name] for f in gated], docs=True) if docs else landing_result)
        for name in failed_feeds:
            for result in results[name]:
                if not result.success and result.suite != LANDING_SUITE:
                    failed.append(_silver_gate(ctx, FEEDS[name], day, lake.read(staging[name]), report.feeds[name],
                                               docs=True) if docs else result)
        causes = [gate_cause(FEEDS[name], day, report.feeds[name], settings) for name in failed_feeds]
        log_summary(report, outcome="gate_failed")
        raise IngestGateFailed(failed, [lake.uri(staging[n]) for n in failed_feeds], causes)

    step("publish")
    for feed in FEEDS.values():
        feed_report = report.feeds[feed.name]
        gone = [uri for uri, w in withdrawn.items() if w.feed == feed.name]
        if feed.name in results or gone:
            feed_report.silver_changed = _publish(ctx, feed, day, lake.read(staging[feed.name]), gone, feed_report)
            if feed.latest_wins:
                # Every report of the day, by the day's partition: a correction of D's files
                # rebuilds exactly this partition from the surviving ones (features/README.md).
                reports = label_report_rows(lake.read(staging[feed.name]))
                feed_report.silver_changed |= _replace_if_changed(
                    lake, reports, catalog.SILVER_LABEL_REPORTS, feed.partition, day, (feed.partition,))
        elif listed[feed.name] is not None and not lake.exists(feed.silver_table):
            # The feed arrived empty (the world's first day has no labels yet): create its silver
            # table anyway, so downstream stages read "no rows yet" rather than "no table".
            empty = silver_rows(lake.read(staging[feed.name]), feed)
            lake.append(empty, feed.silver_table, partition_by=list(feed.silver.partition_by))
            if feed.latest_wins and not lake.exists(catalog.SILVER_LABEL_REPORTS):
                no_reports = label_report_rows(lake.read(staging[feed.name]))
                lake.append(no_reports, catalog.SILVER_LABEL_REPORTS, partition_by=[feed.partition])
            feed_report.silver_changed = True
    for table in staging.values():
        delete_folder(ctx.lake.uri(table))

    report.versions_after = table_versions(lake)
    report.seconds = round(time.perf_counter() - started, 3)
    report.phase_seconds = step.finish()
    log_summary(report, outcome="published")
    return report


def run(call: StageCall) -> StageOutcome:
    """The stage: `ingest_day` for the call's day, as the runner's outcome."""
    report = ingest_day(call.ctx, call.day, call.progress)
    inputs = (catalog.BRONZE_TRANSACTIONS, catalog.BRONZE_LABELS, catalog.INGEST_LOADS)
    outputs = (catalog.SILVER_TRANSACTIONS, catalog.SILVER_LABELS, catalog.SILVER_LABEL_REPORTS,
               catalog.QUARANTINE)
    lines = sum(f.lines for f in report.feeds.values())
    quarantined = sum(f.quarantined for f in report.feeds.values())
    return StageOutcome(
        inputs={t: report.versions_after.get(t) for t in inputs},
        outputs={t: report.versions_after.get(t) for t in outputs},
        details=report.to_dict(),
        message=f"{lines} lines, {quarantined} quarantined",
        report=report,
    )


SPEC = StageSpec(
    name=STAGE,
    description="landing -> bronze -> silver (transactions, labels), gated",
    run=run,
    # The landing day's files (fingerprinted by `observe`) and the corrections recorded for it:
    # a file delivered, superseded or retracted after the day was ingested makes the nightly
    # ingest it again, and re-run what depends on it.
    inputs=("landing", Input(catalog.LANDING_CORRECTIONS, "landing_date", 0, 0)),
    observe=day_fingerprint,
    outputs=TABLES,
    gates=("silver_transactions", "silver_labels"),
    summarize=summary_table,
)


def table_versions(lake: Lake) -> dict[str, int | None]:
    return {table: lake.version(table) for table in TABLES}


# --------------------------------------------------------------------------- steps


def _plan_loads(
    lake: Lake, listed: dict[str, list[LandingFile] | None], landing: str, load_id: str, lines_root: str
) -> dict[str, list[FileLoad]]:
    """Read (stage) every file; reuse the ledger's lineage for files already loaded."""
    from pyspark.sql import functions as F

    files = [f for group in listed.values() for f in (group or [])]
    known: dict[str, Any] = {}
    if files and lake.exists(catalog.INGEST_LOADS):
        rows = (
            lake.read(catalog.INGEST_LOADS)
            .where(F.col("source_file").isin([f.uri for f in files]))
            .select("source_file", "sha256", "size_bytes", "load_id", F.unix_micros("ingested_at").alias("ingested_us"))
            .collect()
        )
        known = {row.source_file: row for row in rows}
    now_us = int(time.time() * 1_000_000)
    loads: dict[str, list[FileLoad]] = {name: [] for name in FEEDS}
    for number, file in enumerate(files):
        staged = stage_file_lines(landing, file, join_uri(lines_root, f"{number:05d}.parquet"))
        digest = staged.sha256
        previous = known.get(file.uri)
        if previous is not None and previous.sha256 != digest:
            raise StageFailed(
                STAGE,
                f"landing file {file.uri} changed after load {previous.load_id} "
                f"({previous.size_bytes} -> {staged.size} bytes, sha256 {previous.sha256[:12]} -> {digest[:12]}). "
                "Landing files are immutable: restore the original, or deliver corrections as a new file.",
            )
        if previous is None:
            loads[file.feed].append(FileLoad(staged, load_id, now_us, new=True))
        else:
            loads[file.feed].append(FileLoad(staged, previous.load_id, previous.ingested_us, new=False))
    return loads


def _write_bronze(ctx: JobContext, feed: Feed, day: date, new_loads: list[FileLoad]) -> int:
    """Write the new files' lines to bronze in one commit; returns the number of rows."""
    if not new_loads:
        return 0
    frame = lines_frame(ctx.spark, new_loads, day)
    files = ", ".join(sql_string(x.file.uri) for x in new_loads)
    predicate = f"landing_date = DATE'{day.isoformat()}' AND source_file IN ({files})"
    ctx.lake.replace_where(bronze_records(frame), feed.bronze_table, predicate, partition_by=["landing_date"])
    return sum(x.line_count for x in new_loads)


def _record_loads(ctx: JobContext, day: date, new_loads: list[FileLoad]) -> None:
    import pyarrow as pa

    if not new_loads:
        return
    table = pa.table(
        {
            "source": pa.array([x.file.feed for x in new_loads], pa.string()),
            "source_file": pa.array([x.file.uri for x in new_loads], pa.string()),
            "landing_date": pa.array([day] * len(new_loads), pa.date32()),
            "size_bytes": pa.array([x.staged.size for x in new_loads], pa.int64()),
            "sha256": pa.array([x.sha256 for x in new_loads], pa.string()),
            "line_count": pa.array([x.line_count for x in new_loads], pa.int64()),
            "load_id": pa.array([x.load_id for x in new_loads], pa.string()),
            "ingested_at": pa.array([x.ingested_at_us for x in new_loads], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
    )
    ctx.lake.append(ctx.spark.createDataFrame(table, schema=LOADS_SCHEMA), catalog.INGEST_LOADS)


def staging_table(feed: Feed, day: date) -> str:
    return f"_staging.ingest_{feed.name}_{day:%Y%m%d}"


def _stage_day(
    ctx: JobContext, feed: Feed, day: date, loads: list[FileLoad], window: tuple[date | None, date | None] = (None, None)
) -> str:
    """Validate and classify the day's lines into a fresh staging table; returns its name."""
    from pyspark.sql import functions as F

    settings = ctx.settings.ingest
    lines = lines_frame(ctx.spark, loads, day)
    checked = validate_lines(lines, feed.event, settings.max_line_bytes, settings.validator)
    published = None
    if not feed.latest_wins and ctx.lake.exists(feed.silver_table):
        published = ctx.lake.read(feed.silver_table).where(
            F.col(feed.partition) != F.lit(day.isoformat()).cast("date")
        )
    classified = classify(checked, feed, day, published, window).withColumn("raw", F.call_function("make_valid_utf8", "raw_bytes")).drop("raw_bytes")
    table = staging_table(feed, day)
    delete_folder(ctx.lake.uri(table))
    ctx.lake.append(classified, table)
    return table


def _count_outcomes(lake: Lake, staging: str, report: FeedReport) -> None:
    counts = outcome_counts(lake.read(staging)).collect()
    by_status = dict.fromkeys(STATUSES, 0)
    decided: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in counts:
        by_status[row.status] += row["count"]
        decided[row.decided_by] = decided.get(row.decided_by, 0) + row["count"]
        if row.status == QUARANTINED:
            reasons[row.reason] = reasons.get(row.reason, 0) + row["count"]
    report.accepted = by_status[ACCEPTED]
    report.quarantined = by_status[QUARANTINED]
    report.duplicates = by_status[DUPLICATE]
    report.superseded = by_status[SUPERSEDED]
    report.reasons = dict(sorted(reasons.items()))
    report.decided_by = dict(sorted(decided.items()))
    staged_lines = sum(by_status.values())
    if staged_lines != report.surviving_lines:  # every line of the surviving files has exactly one fate
        raise StageFailed(STAGE, f"{report.feed}: {report.surviving_lines} lines read but {staged_lines} classified")


def _check_bronze_counts(lake: Lake, day: date, loads: dict[str, list[FileLoad]], report: IngestReport) -> None:
    """The day's bronze rows of each file must equal its lines (bronze is complete, once)."""
    from pyspark.sql import functions as F

    for feed in FEEDS.values():
        uris = [x.file.uri for x in loads[feed.name]]
        if not uris:
            continue
        rows = (
            lake.read(feed.bronze_table)
            .where((F.col("landing_date") == F.lit(day.isoformat()).cast("date")) & F.col("source_file").isin(uris))
            .count()
        )
        if rows != report.feeds[feed.name].lines:
            raise StageFailed(
                STAGE,
                f"bronze {feed.bronze_table} holds {rows} rows for the day's {feed.name} files, "
                f"but the files have {report.feeds[feed.name].lines} lines",
            )


# --------------------------------------------------------------------------- day sanity


def day_window(settings: Settings) -> tuple[date | None, date | None]:
    """The first and last UTC day ingest accepts, around the pipeline's clock."""
    today = settings.pipeline.now().date()
    cfg = settings.ingest.day_window
    return (None if cfg.max_days_behind is None else today - timedelta(days=cfg.max_days_behind),
            None if cfg.max_days_ahead is None else today + timedelta(days=cfg.max_days_ahead))


def refused_day(settings: Settings, day: date, window: tuple[date | None, date | None]) -> str | None:
    """Why the landing day `day` is refused (outside `window`), or None."""
    first, last = window
    today = settings.pipeline.now().date()
    clock = "pipeline.clock" if settings.pipeline.clock else "the system clock"
    if last is not None and day > last:
        return (f"landing day {day} is {(day - today).days:,} days after the pipeline's day {today} ({clock}); "
                f"ingest accepts days up to {settings.ingest.day_window.max_days_ahead} ahead "
                "(ingest.day_window.max_days_ahead). A skewed upstream clock: have the day re-delivered "
                "under its real date (or, if the pipeline's clock is wrong, set pipeline.clock)")
    if first is not None and day < first:
        return (f"landing day {day} is {(today - day).days:,} days before the pipeline's day {today} ({clock}); "
                f"ingest accepts days up to {settings.ingest.day_window.max_days_behind} behind "
                "(ingest.day_window.max_days_behind)")
    return None


# --------------------------------------------------------------------------- gates


LANDING_SUITE = "landing_day"


def gate_parameters(ctx: JobContext, feed: Feed, day: date, report: FeedReport) -> dict[str, Any]:
    """Run-time values of the feed's suite, derived from the contract, the day and settings."""
    gate_settings = ctx.settings.ingest.gate
    rows_min, rows_max = volume_bounds(report.recent_median, gate_settings.volume)
    params: dict[str, Any] = {
        "expected_rows": report.expected_silver_rows,
        "rows_min": rows_min,
        "rows_max": rows_max,
        "day_start": f"{day.isoformat()}T00:00:00",
        "day_end": f"{day.isoformat()}T23:59:59.999999",
    }
    for f in feed.event.fields:
        if f.minimum is not None:
            params[f"{f.name}_min"] = f.minimum
        if f.maximum is not None:
            params[f"{f.name}_max"] = f.maximum
    if feed is TRANSACTIONS:
        if gate_settings.amount_min is not None:
            params["amount_min"] = gate_settings.amount_min
        if gate_settings.amount_max is not None:
            params["amount_max"] = gate_settings.amount_max
        params["mean_amount_min"] = gate_settings.mean_amount_min
        params["mean_amount_max"] = gate_settings.mean_amount_max
    return params


def volume_bounds(median: float | None, cfg: VolumeCheck) -> tuple[int, int | None]:
    """Fewest and most accepted rows the day may have: ratios of the recent median (none yet: any)."""
    if median is None:
        return 0, None
    return math.floor(median * cfg.min_ratio), None if cfg.max_ratio is None else math.ceil(median * cfg.max_ratio)


def landing_profile(reports: Sequence[FeedReport], settings: Settings) -> Any:
    """The day's surviving lines of each feed by fate (accepted, duplicate, superseded, each
    quarantine reason, all quarantined) with their share and the highest share allowed, and the
    feed's lines with the fewest required: what the `landing_day` suite checks, in one run for
    the day. A small pandas frame: the counts are already known."""
    import pandas as pd

    gate = settings.ingest.gate
    rows = []
    for report in reports:
        lines, fewest = report.surviving_lines, gate.min_day_lines.get(report.feed, 0)
        fates = [("accepted", report.accepted, 1.0), ("duplicate", report.duplicates, 1.0),
                 ("superseded", report.superseded, 1.0), ("quarantined", report.quarantined, gate.max_rejected_rate)]
        fates += [(reason, count, gate.max_quarantine_rate_by_reason.get(reason, gate.max_quarantine_rate))
                  for reason, count in sorted(report.reasons.items())]
        rows += [(report.feed, fate, count, lines, fewest, count / lines if lines else 0.0, float(bound))
                 for fate, count, bound in fates]
    return pd.DataFrame(rows, columns=["feed", "outcome", "lines", "day_lines", "min_day_lines", "rate", "max_rate"])


def landing_violated(report: FeedReport, settings: Settings) -> bool:
    """Whether the feed's rows of the landing profile break the `landing_day` suite's bounds
    (to say which feed a failed run is about; GX's run is the verdict)."""
    profile = landing_profile([report], settings)
    return bool((profile["day_lines"] < profile["min_day_lines"]).any() or (profile["rate"] > profile["max_rate"]).any())


def gate_cause(feed: Feed, day: date, report: FeedReport, settings: Settings) -> str:
    """One line saying why the feed's day failed its gates, before the expectations say how."""
    gate = settings.ingest.gate
    lines = report.surviving_lines
    head = f"{feed.name} {day}"
    if lines < gate.min_day_lines.get(feed.name, 0):
        if report.files == 0:
            return f"{head}: no {feed.name} file landed (the day's folder is missing or holds no file)"
        if report.files_withdrawn == report.files:
            return f"{head}: every {feed.name} file of the day is superseded or retracted"
        return f"{head}: the day's {feed.name} files hold {lines:,} lines (at least {gate.min_day_lines[feed.name]:,} expected)"
    over = [reason for reason, count in report.reasons.items()
            if count / lines > gate.max_quarantine_rate_by_reason.get(reason, gate.max_quarantine_rate)]
    if over or (lines and report.quarantined / lines > gate.max_rejected_rate):
        top = sorted(report.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        reasons = top[0][0] if len(top) == 1 else ", ".join(f"{r} {c:,}" for r, c in top[:4])
        return f"{head}: {report.quarantined:,} of {lines:,} lines rejected: {reasons}"
    rows_min, rows_max = volume_bounds(report.recent_median, gate.volume)
    if report.accepted < rows_min or (rows_max is not None and report.accepted > rows_max):
        share = report.accepted / report.recent_median if report.recent_median else 0.0
        return (f"{head}: {report.accepted:,} lines accepted, {share:.0%} of the median of the last "
                f"{gate.volume.lookback_days} days ({report.recent_median:,.0f}; allowed {rows_min:,} .. "
                f"{'any' if rows_max is None else f'{rows_max:,}'})")
    return f"{head}: {report.accepted:,} of {lines:,} lines accepted, and they break the {feed.suite} expectations"


def _recent_median(lake: Lake, feed: Feed, day: date, cfg: VolumeCheck) -> float | None:
    """Median accepted rows per day of the `lookback_days` before `day` in silver (None: too few days)."""
    from pyspark.sql import functions as F

    if not lake.exists(feed.silver_table):
        return None
    first = day - timedelta(days=cfg.lookback_days)
    counts = [row["count"] for row in lake.read(feed.silver_table)
              .where(F.col(feed.partition).between(F.lit(first.isoformat()).cast("date"),
                                                    F.lit((day - timedelta(days=1)).isoformat()).cast("date")))
              .groupBy(feed.partition).count().collect()]
    return float(statistics.median(counts)) if len(counts) >= cfg.min_days else None


def _landing_gate(ctx: JobContext, day: date, reports: Sequence[FeedReport], docs: bool | None = None) -> GateResult:
    """What became of the day's lines, every gated feed in one `landing_day` run."""
    build_docs = ctx.settings.ingest.gate.data_docs == "always" if docs is None else docs
    return validate(landing_profile(reports, ctx.settings), LANDING_SUITE, ctx.settings,
                    run_name=f"ingest-landing-{day.isoformat()}", build_docs=build_docs)


def _silver_gate(
    ctx: JobContext, feed: Feed, day: date, staged: DataFrame, report: FeedReport, docs: bool | None = None
) -> GateResult:
    """The feed's rows about to be published through its silver suite."""
    build_docs = ctx.settings.ingest.gate.data_docs == "always" if docs is None else docs
    return validate(
        silver_rows(staged, feed), feed.suite, ctx.settings, run_name=f"ingest-{feed.name}-{day.isoformat()}",
        parameters=gate_parameters(ctx, feed, day, report), build_docs=build_docs,
    )


# --------------------------------------------------------------------------- publish


def _publish(
    ctx: JobContext, feed: Feed, day: date, staged: DataFrame, withdrawn: Sequence[str] = (),
    report: FeedReport | None = None,
) -> bool:
    """Make the day visible in silver; returns whether the table changed. `withdrawn`: the
    feed's superseded or retracted files of the day, whose rows leave silver."""
    from pyspark.sql import functions as F

    rows = silver_rows(staged, feed)
    if not feed.latest_wins:
        return _replace_if_changed(ctx.lake, rows, feed.silver_table, feed.partition, day, feed.silver.partition_by)
    # Labels: upsert on the key; a report only replaces an older one (latest wins, across days).
    # Keys new to silver (nearly all) are appended; only re-reports need a MERGE, which scans
    # the whole table, so it runs only when there are some.
    lake = ctx.lake
    if not lake.exists(feed.silver_table):
        lake.append(rows, feed.silver_table, partition_by=list(feed.silver.partition_by))
        return True
    if withdrawn:
        changed = _publish_over_withdrawn(ctx, feed, day, rows, withdrawn, report)
        if changed is not None:
            return changed
    current = lake.read(feed.silver_table).select(
        *[F.col(k).alias(f"__current_{k}") for k in feed.key],
        F.col(feed.time_field).alias("__current_time"),
    )
    on = [F.col(k) == F.col(f"__current_{k}") for k in feed.key]
    compared = rows.join(current, on=on, how="left")
    new_keys = compared.where(F.col("__current_time").isNull()).select(*rows.columns)
    newer = compared.where(F.col(feed.time_field) > F.col("__current_time")).select(*rows.columns)
    counts = compared.agg(
        F.count(F.when(F.col("__current_time").isNull(), 1)).alias("new"),
        F.count(F.when(F.col(feed.time_field) > F.col("__current_time"), 1)).alias("newer"),
    ).first()
    if counts["new"]:
        lake.append(new_keys, feed.silver_table, partition_by=list(feed.silver.partition_by))
    if counts["newer"]:
        lake.merge(
            newer,
            feed.silver_table,
            keys=feed.key,
            partition_by=list(feed.silver.partition_by),
            matched_condition=f"s.`{feed.time_field}` > t.`{feed.time_field}`",
        )
    return bool(counts["new"] or counts["newer"])


def _publish_over_withdrawn(
    ctx: JobContext, feed: Feed, day: date, rows: DataFrame, withdrawn: Sequence[str], report: FeedReport | None
) -> bool | None:
    """Labels whose silver row came from a withdrawn file: each key takes the day's surviving
    report if there is one (even an earlier one: the withdrawn report no longer counts), else
    the latest report of an earlier day that silver held before (from bronze, less what
    quarantine rejected and what other withdrawn files said), else leaves silver. One MERGE, with
    the day's other rows under the usual latest-wins rule. None when no silver row is affected."""
    from pyspark.sql import functions as F

    from cardscore.schemas.spark_validation import validate_lines

    lake, settings = ctx.lake, ctx.settings
    version = lake.version(feed.silver_table)  # pinned: the MERGE below rewrites these rows
    affected = lake.read(feed.silver_table, version=version).where(F.col("source_file").isin(list(withdrawn)))
    count = affected.count()
    if count == 0:
        return None
    keys = affected.select(*feed.key)
    every_withdrawn = [uri for uri, w in withdrawals(lake, feed=feed.name).items()]
    bronze = lake.read(feed.bronze_table).where(
        (F.col("landing_date") < F.lit(day.isoformat()).cast("date")) & ~F.col("source_file").isin(every_withdrawn)
    )
    lines = bronze.select(
        F.col("raw").cast("binary").alias("raw_bytes"), "line_number", "source_file", "load_id", "ingested_at", "landing_date"
    )
    # Staged before any join, as the day's own lines are: joins over the validator's plan were
    # pathologically slow on Sail (a two-row semi join: 70 s).
    staged_earlier = f"_staging.ingest_{feed.name}_earlier_{day:%Y%m%d}"
    delete_folder(lake.uri(staged_earlier))
    lake.append(validate_lines(lines, feed.event, settings.ingest.max_line_bytes, settings.ingest.validator)
                .drop("raw_bytes"), staged_earlier)
    checked = lake.read(staged_earlier)
    quarantined = (lake.read(catalog.QUARANTINE).where(F.col("source") == feed.name)
                   if lake.exists(catalog.QUARANTINE) else checked.select("source_file", "line_number").limit(0))
    earlier = latest_reports(checked.join(keys, feed.key, "left_semi"), feed, quarantined)
    todays = rows.join(keys, feed.key, "left_semi")
    replacements = todays.unionByName(earlier.join(todays.select(*feed.key), feed.key, "left_anti"))
    removals = affected.join(replacements.select(*feed.key), feed.key, "left_anti")
    others = rows.join(keys, feed.key, "left_anti")
    source = (
        replacements.withColumn("__force", F.lit(True)).withColumn("__remove", F.lit(False))
        .unionByName(removals.withColumn("__force", F.lit(True)).withColumn("__remove", F.lit(True)))
        .unionByName(others.withColumn("__force", F.lit(False)).withColumn("__remove", F.lit(False)))
    )
    # Materialised first: a MERGE whose source reads its own target (and a Python UDF) never
    # finished on Sail; the staged rows are also what the MERGE is checked against.
    staged_source = f"_staging.ingest_{feed.name}_withdrawn_{day:%Y%m%d}"
    delete_folder(lake.uri(staged_source))
    lake.append(source, staged_source)
    columns = feed.silver.field_names
    view = f"cardscore_labels_src_{uuid.uuid4().hex}"
    lake.read(staged_source).createOrReplaceTempView(view)
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in feed.key)
    assign = ", ".join(f"`{c}` = s.`{c}`" for c in columns)
    names = ", ".join(f"`{c}`" for c in columns)
    values = ", ".join(f"s.`{c}`" for c in columns)
    before = lake.version(feed.silver_table)
    try:
        ctx.spark.sql(
            f"MERGE INTO delta.`{lake.uri(feed.silver_table)}` AS t USING {view} AS s ON {on} "
            "WHEN MATCHED AND s.__remove THEN DELETE "
            f"WHEN MATCHED AND (s.__force OR s.`{feed.time_field}` > t.`{feed.time_field}`) THEN UPDATE SET {assign} "
            f"WHEN NOT MATCHED AND NOT s.__remove THEN INSERT ({names}) VALUES ({values})"
        ).collect()
    finally:
        ctx.spark.catalog.dropTempView(view)
    delete_folder(lake.uri(staged_source))
    delete_folder(lake.uri(staged_earlier))
    if report is not None:
        report.restored = count
    log.info("ingest.labels_withdrawn", day=day.isoformat(), affected=count, withdrawn_files=len(withdrawn))
    return lake.version(feed.silver_table) != before


def _replace_if_changed(
    lake: Lake, rows: DataFrame, table: str, partition: str, day: date, partition_by: Sequence[str]
) -> bool:
    """Replace the day's partition with `rows` unless it already holds exactly those rows."""
    from pyspark.sql import functions as F

    predicate = f"{partition} = DATE'{day.isoformat()}'"
    if lake.exists(table):
        current = lake.read(table).where(F.col(partition) == F.lit(day.isoformat()).cast("date"))
        # Exact multiset comparison, both directions in one query.
        differences = rows.exceptAll(current).unionAll(current.exceptAll(rows))
        if differences.limit(1).count() == 0:
            return False
    lake.replace_where(rows, table, predicate, partition_by=list(partition_by))
    return True
