"""Pure transformations of the ingest stage: raw lines -> bronze, classified lines -> silver and
quarantine. DataFrame in, DataFrame out; all I/O lives in `jobs/ingest/main.py`.

A day's lines go through `classify`, which gives every line exactly one status:

* ``accepted``: typed, valid, on the landing day, the one row kept for its key;
* ``quarantined``: rejected, with a reason code (`schemas.reasons.RejectReason`);
* ``duplicate``: an identical copy (same typed content, same key) of an accepted line,
  dropped silently and counted;
* ``superseded``: (labels) an earlier report of a transaction that a later report of the same
  day replaces; dropped and counted, like duplicates.

So the lines of a day's surviving files (those not superseded or retracted,
jobs/ingest/corrections.py) = accepted + quarantined + duplicate + superseded, the identity the
gate's row-count expectation checks.

Rules, in order (the first that applies decides):
1. the contract checks of `schemas.spark_validation.validate_lines` (same as the stream path);
2. ``outside_window``: the record's UTC day is outside the window of days ingest accepts
   around the pipeline's clock (`ingest.day_window`, `pipeline.clock`): a skewed upstream clock;
3. ``outside_day``: the record's time (transactions: event_time, labels: reported_time) is
   not on the landing folder's UTC day;
4. ``duplicate_conflict`` across days (transactions): the id is already published in silver
   under another day: ids are unique across the whole table, so the newcomer is rejected;
5. within the day, per key: labels keep the latest report (earlier ones are superseded);
   rows with the same key and different content (for labels: at the same, latest
   reported_time) are all ``duplicate_conflict`` (which one is right cannot be known);
   identical copies keep the first by (ingested_at, source_file, line_number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from cardscore.core import catalog
from cardscore.schemas.contract import Contract
from cardscore.schemas.contracts import (
    BRONZE_RECORD,
    LABEL_EVENT,
    QUARANTINE_RECORD,
    SILVER_LABEL,
    SILVER_LABEL_REPORT,
    SILVER_TRANSACTION,
    TRANSACTION_EVENT,
)
from cardscore.schemas.reasons import RejectReason
from cardscore.schemas.spark_validation import decode_raw

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

ACCEPTED, QUARANTINED, DUPLICATE, SUPERSEDED = "accepted", "quarantined", "duplicate", "superseded"
STATUSES = (ACCEPTED, QUARANTINED, DUPLICATE, SUPERSEDED)
# Which identical copy is kept: the earliest loaded, then by file name and line.
LINE_ORDER = ("ingested_at", "source_file", "line_number")


@dataclass(frozen=True)
class Feed:
    """One landing feed and where its layers live."""

    name: str  # folder under the landing root, and `source` in quarantine
    event: Contract  # the wire contract of a line
    silver: Contract  # the silver table's contract
    bronze_table: str
    silver_table: str
    time_field: str  # must fall on the landing day
    partition: str  # silver partition column: the UTC date of time_field
    suite: str  # GX suite gating the day's silver rows
    latest_wins: bool  # labels: a later report of the same key replaces an earlier one

    @property
    def key(self) -> list[str]:
        return list(self.event.key)


TRANSACTIONS = Feed(
    name="transactions",
    event=TRANSACTION_EVENT,
    silver=SILVER_TRANSACTION,
    bronze_table=catalog.BRONZE_TRANSACTIONS,
    silver_table=catalog.SILVER_TRANSACTIONS,
    time_field="event_time",
    partition="tx_date",
    suite="silver_transactions",
    latest_wins=False,
)
LABELS = Feed(
    name="labels",
    event=LABEL_EVENT,
    silver=SILVER_LABEL,
    bronze_table=catalog.BRONZE_LABELS,
    silver_table=catalog.SILVER_LABELS,
    time_field="reported_time",
    partition="reported_date",
    suite="silver_labels",
    latest_wins=True,
)
FEEDS: dict[str, Feed] = {f.name: f for f in (TRANSACTIONS, LABELS)}


# --------------------------------------------------------------------------- bronze


def shaped_like(df: DataFrame, schema: StructType) -> DataFrame:
    """`df`'s columns in `schema`'s order and types (what `DataFrame.to(schema)` does, without
    its nullability check). JVM Spark's `to` rejects a column it cannot prove non-null for a NOT
    NULL field (NULLABLE_COLUMN_OR_FIELD), even when no row is null; Sail's does not check. The
    contract's NOT NULLs are enforced by the gates before publishing, and Delta stores the
    columns as nullable on both engines. Types are cast as DDL text (`cardscore.core.spark_types`)."""
    from pyspark.sql import functions as F

    from cardscore.core.spark_types import ddl_type

    return df.select(*[F.col(f.name).cast(ddl_type(f.dataType)).alias(f.name) for f in schema.fields])




def bronze_records(lines: DataFrame) -> DataFrame:
    """`BRONZE_RECORD` rows from raw lines (raw_bytes, line_number and the lineage columns).

    `raw` is the line's text; bytes that are not UTF-8 become U+FFFD (the landing file keeps
    the exact bytes, and the quarantine row says the line was not UTF-8).
    """
    from pyspark.sql import functions as F

    return lines.select(
        decode_raw(F.col("raw_bytes")).alias("raw"),
        "line_number",
        "source_file",
        "load_id",
        "ingested_at",
        "landing_date",
    ).transform(shaped_like, BRONZE_RECORD.spark_schema())


# --------------------------------------------------------------------------- classification


def classify(
    checked: DataFrame,
    feed: Feed,
    day: date,
    published_elsewhere: DataFrame | None = None,
    window: tuple[date | None, date | None] = (None, None),
) -> DataFrame:
    """Every checked line with `status`, final `reason` and `detail` (see the module docstring).

    `checked` is `validate_lines` output (reason null = valid, typed contract fields).
    `published_elsewhere` holds (key..., partition) of silver rows outside this day, for the
    cross-day uniqueness rule; None skips it (labels, or no silver table yet). `window` is the
    first and last UTC day a record may fall on (None: unbounded).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    day_lit = F.lit(day.isoformat()).cast("date")
    event_day = F.to_date(F.col(feed.time_field))
    first, last = window
    beyond = F.lit(False)
    if first is not None:
        beyond = beyond | (event_day < F.lit(first.isoformat()).cast("date"))
    if last is not None:
        beyond = beyond | (event_day > F.lit(last.isoformat()).cast("date"))
    refused = F.col("reason").isNull() & beyond
    checked = checked.withColumn(
        "detail",
        F.when(
            refused,
            F.concat(
                F.lit(f"{feed.time_field} is on "),
                event_day.cast("string"),
                F.lit(f", outside the days ingest accepts around the pipeline's clock "
                      f"({first or 'any'} .. {last or 'any'}; ingest.day_window, pipeline.clock)"),
            ),
        ).otherwise(F.col("detail")),
    ).withColumn("reason", F.when(refused, F.lit(RejectReason.OUTSIDE_WINDOW.value)).otherwise(F.col("reason")))
    outside = F.col("reason").isNull() & (event_day != day_lit)
    staged = checked.withColumn(
        "detail",
        F.when(
            outside,
            F.concat(
                F.lit(f"{feed.time_field} is on "),
                event_day.cast("string"),
                F.lit(f", not on the landing day {day.isoformat()}"),
            ),
        ).otherwise(F.col("detail")),
    ).withColumn("reason", F.when(outside, F.lit(RejectReason.OUTSIDE_DAY.value)).otherwise(F.col("reason")))

    if published_elsewhere is not None:
        # Silver holds one row per key (this rule keeps it so), hence a plain left join; were
        # it ever violated, lines would multiply and the job's line-count check stops the day.
        taken = published_elsewhere.select(
            *feed.key, F.col(feed.partition).cast("string").alias("__published_on")
        )
        staged = staged.join(taken, on=feed.key, how="left")
        clash = F.col("reason").isNull() & F.col("__published_on").isNotNull()
        staged = staged.withColumn(
            "detail",
            F.when(
                clash,
                F.concat(
                    F.lit(f"{'/'.join(feed.key)} already published for {feed.partition} "),
                    F.col("__published_on"),
                ),
            ).otherwise(F.col("detail")),
        ).withColumn(
            "reason", F.when(clash, F.lit(RejectReason.DUPLICATE_CONFLICT.value)).otherwise(F.col("reason"))
        ).drop("__published_on")

    valid = F.col("reason").isNull()
    by_key = Window.partitionBy(*feed.key)
    if feed.latest_wins:
        latest = F.max(F.when(valid, F.col(feed.time_field))).over(by_key)
        superseded = valid & (F.col(feed.time_field) < latest)
    else:
        superseded = F.lit(False)
    staged = staged.withColumn("__superseded", superseded)
    contender = valid & ~F.col("__superseded")
    # Content = the typed contract fields, as canonical text (exact, and null-safe).
    content = F.to_json(F.struct(*[F.col(f.name) for f in feed.event.fields]))
    staged = staged.withColumn("__content", F.when(contender, content))
    lowest = F.min("__content").over(by_key)
    highest = F.max("__content").over(by_key)
    first = F.row_number().over(
        Window.partitionBy(*feed.key, F.col("__content").isNull()).orderBy(*LINE_ORDER)
    )
    staged = (
        staged.withColumn("__conflict", contender & (lowest != highest))
        .withColumn("__first", first == 1)
    )
    status = (
        F.when(~valid, F.lit(QUARANTINED))
        .when(F.col("__superseded"), F.lit(SUPERSEDED))
        .when(F.col("__conflict"), F.lit(QUARANTINED))
        .when(F.col("__first"), F.lit(ACCEPTED))
        .otherwise(F.lit(DUPLICATE))
    )
    conflict_detail = F.concat(
        F.lit(f"{'/'.join(feed.key)} appears "),
        F.count(F.when(F.col("__content").isNotNull(), 1)).over(by_key).cast("string"),
        F.lit(" times in the day with different content"),
    )
    return (
        staged.withColumn("status", status)
        .withColumn(
            "detail", F.when(valid & F.col("__conflict"), conflict_detail).otherwise(F.col("detail"))
        )
        .withColumn(
            "reason",
            F.when(valid & F.col("__conflict"), F.lit(RejectReason.DUPLICATE_CONFLICT.value)).otherwise(
                F.col("reason")
            ),
        )
        .drop("__superseded", "__content", "__conflict", "__first")
    )


# --------------------------------------------------------------------------- silver and quarantine


def silver_rows(classified: DataFrame, feed: Feed) -> DataFrame:
    """The day's accepted rows shaped to the silver contract (partition = UTC date of time)."""
    from pyspark.sql import functions as F

    columns: list[Column | str] = [F.col(f.name) for f in feed.event.fields]
    columns += ["source_file", "load_id", "ingested_at", F.to_date(F.col(feed.time_field)).alias(feed.partition)]
    return (
        classified.where(F.col("status") == ACCEPTED)
        .select(*columns)
        .transform(shaped_like, feed.silver.spark_schema())
    )


def label_report_rows(classified: DataFrame) -> DataFrame:
    """The day's label reports for `silver.label_reports` (`SILVER_LABEL_REPORT`): the accepted
    rows **and** the superseded ones (a report that a later one of the same day replaces in
    silver.labels, but which may be the earliest report of its transaction), one row per
    (transaction_id, reported_time): identical copies once (the first by `LINE_ORDER`), and an
    earlier time with two different contents left out, as a conflict is at the latest time
    (which one is right cannot be known)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    feed = LABELS
    at = Window.partitionBy(*SILVER_LABEL_REPORT.key)
    content = F.to_json(F.struct(*[F.col(f.name) for f in feed.event.fields]))
    kept = (
        classified.where(F.col("status").isin(ACCEPTED, SUPERSEDED))
        .withColumn("__content", content)
        .withColumn("__same", F.min("__content").over(at) == F.max("__content").over(at))
        .withColumn("__first", F.row_number().over(at.orderBy(*LINE_ORDER)) == 1)
        .where(F.col("__same") & F.col("__first"))
    )
    columns: list[Column | str] = [F.col(f.name) for f in feed.event.fields]
    columns += ["source_file", "load_id", "ingested_at", F.to_date(F.col(feed.time_field)).alias(feed.partition)]
    return kept.select(*columns).transform(shaped_like, SILVER_LABEL_REPORT.spark_schema())


def quarantine_records(classified: DataFrame, feed: Feed, raw_max_chars: int) -> DataFrame:
    """The day's quarantined lines as `QUARANTINE_RECORD` rows, raw text cut to `raw_max_chars`.

    `quarantined_at` is when the line's file was loaded, so a re-run writes identical rows.
    """
    from pyspark.sql import functions as F

    raw = F.col("raw")
    return (
        classified.where(F.col("status") == QUARANTINED)
        .select(
            F.lit(feed.name).alias("source"),
            "source_file",
            "line_number",
            "reason",
            "detail",
            F.when(F.char_length(raw) > raw_max_chars, F.substring(raw, 1, raw_max_chars))
            .otherwise(raw)
            .alias("raw"),
            (F.char_length(raw) > raw_max_chars).alias("raw_truncated"),
            "load_id",
            F.col("ingested_at").alias("quarantined_at"),
            "landing_date",
        )
        .transform(shaped_like, QUARANTINE_RECORD.spark_schema())
    )


def latest_reports(checked: DataFrame, feed: Feed, quarantined: DataFrame) -> DataFrame:
    """Per key, the report silver held before a later one replaced it: from earlier days' lines
    (`validate_lines` output over bronze rows with their lineage and `landing_date`), the valid
    ones on their landing day that quarantine did not reject (`quarantined`: source_file,
    line_number), the latest by time, identical copies resolved as `classify` does. Shaped to
    the silver contract. Used when a withdrawn file's reports leave silver (labels)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    valid = checked.where(F.col("reason").isNull() & (F.to_date(F.col(feed.time_field)) == F.col("landing_date")))
    kept = valid.join(quarantined.select("source_file", "line_number"), ["source_file", "line_number"], "left_anti")
    order = Window.partitionBy(*feed.key).orderBy(F.col(feed.time_field).desc(), *LINE_ORDER)
    latest = kept.withColumn("__rank", F.row_number().over(order)).where(F.col("__rank") == 1).drop("__rank")
    return silver_rows(latest.withColumn("status", F.lit(ACCEPTED)), feed)


def outcome_counts(classified: DataFrame) -> DataFrame:
    """Lines per (status, reason, decided_by): small, for reports and the gate's row count."""
    return classified.groupBy("status", "reason", "decided_by").count()
