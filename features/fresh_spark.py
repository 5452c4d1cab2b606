"""The exact offline point-in-time fresh features: a pure Spark transform, generated from
`features.fresh.FRESH_FEATURES` (semantics in features/README.md, "Fresh features").

DataFrame in, DataFrame out; only the DataFrame API common to classic Spark and Spark Connect
(Sail runs it): no rdd, no sparkContext, no Python UDF.

* Window features: `Window.partitionBy(key).orderBy(us).rangeBetween(-W, -1)` over the event
  time in microseconds is exactly the half-open [t-W, t), ties at t excluded.
* Reported frauds: a transaction of time e is a reported fraud at t when its latest valid
  report before t says fraud, so its fraud *spells* are the intervals (s, end] from a report
  that turns it fraud (s) to the next that turns it genuine (end; none: forever). A spell
  counts at t when e >= t-W too, i.e. for t in (s, min(e+W, end)]. Each spell becomes two
  events, +1 at s and -1 at min(e+W, end) (none when s is not before that), and the count at
  t is the running sum of the events strictly before t (`rangeBetween(unboundedPreceding,
  -1)`): integers, exact. Without retractions a transaction has one spell from its earliest
  fraud report.

Amounts are summed as integer micro-units (`features.fresh.amount_micros`), so the sums do not
depend on the order Spark adds them in.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cardscore.features.fresh import (
    AMOUNT_SCALE,
    FRESH_FEATURES,
    MICROS_PER_SECOND,
    NO_VALUE,
    Aggregate,
    Entity,
    FreshFeature,
    features_of,
)

TRANSACTION_ID = "transaction_id"
_US = "_fresh_us"  # event time, epoch microseconds
_AMOUNT_US = "_fresh_amount_us"  # amount in integer micro-units
_TIME = "_fresh_time"
_QUERY = "_fresh_query"


def fresh_features(
    transactions: DataFrame, labels: DataFrame, features: tuple[FreshFeature, ...] = FRESH_FEATURES
) -> DataFrame:
    """`transactions` with one column per fresh feature appended (declaration order), each the
    exact value at the transaction's own event time.

    transactions: transaction_id, customer_id, terminal_id, amount (double), event_time
    (timestamp); one row per transaction id (the silver key). labels: transaction_id, is_fraud,
    reported_time (timestamp); any number of reports per id (the latest valid report before t
    decides; at equal report times a fraud report wins).
    """
    base = transactions.withColumn(_US, F.unix_micros(F.col("event_time"))).withColumn(
        _AMOUNT_US, F.round(F.col("amount") * F.lit(float(AMOUNT_SCALE))).cast("long")
    )
    out = base
    for entity in Entity:
        windowed = [f for f in features_of(entity, features) if f.aggregate != Aggregate.FRAUDS_REPORTED]
        if windowed:
            out = out.select("*", *_window_columns(windowed))
    frauds = _fraud_spells(base, labels)
    for entity in Entity:
        counted = [f for f in features_of(entity, features) if f.aggregate == Aggregate.FRAUDS_REPORTED]
        if counted:
            out = out.join(_fraud_counts(base, frauds, counted), on=TRANSACTION_ID, how="left")
    filled = [
        F.coalesce(F.col(f.name), F.lit(0)).cast("long").alias(f.name)
        if f.aggregate == Aggregate.FRAUDS_REPORTED
        else F.col(f.name)
        for f in features
    ]
    return out.select(*transactions.columns, *filled)


# ------------------------------------------------------------------------------ windows


def _window_columns(features: list[FreshFeature]) -> list[Column]:
    """The columns of window aggregates of one entity (all share partitionBy and orderBy)."""
    ordered = Window.partitionBy(features[0].key).orderBy(_US)
    columns = []
    for f in features:
        frame = ordered.rangeBetween(-f.window_us, -1)
        n = F.count(F.lit(1)).over(frame)
        total = F.coalesce(F.sum(_AMOUNT_US).over(frame), F.lit(0)).cast("double") / F.lit(float(AMOUNT_SCALE))
        columns.append(_finish(f, frame, n, total).alias(f.name))
    return columns


def _finish(f: FreshFeature, frame: Window, n: Column, total: Column) -> Column:
    """One feature from its window's count n and amount sum (a double, `sum_us / 1e6`)."""
    mean = total / n.cast("double")
    if f.aggregate == Aggregate.COUNT:
        return n.cast("long")
    if f.aggregate == Aggregate.SUM:
        return total
    if f.aggregate == Aggregate.MEAN:
        return F.when(n > 0, mean).otherwise(F.lit(0.0))
    if f.aggregate == Aggregate.SINCE_PREVIOUS:
        gap = (F.col(_US) - F.max(_US).over(frame)).cast("double") / F.lit(float(MICROS_PER_SECOND))
        return F.when(n > 0, gap).otherwise(F.lit(NO_VALUE))
    if f.aggregate == Aggregate.DISTINCT_TERMINALS:
        # Sail returns NULL, not an empty set, for an empty frame: count first.
        distinct = F.size(F.collect_set(F.col("terminal_id")).over(frame))
        return F.when(n > 0, distinct).otherwise(F.lit(0)).cast("long")
    if f.aggregate == Aggregate.OVER_MEAN:
        summed = F.sum(_AMOUNT_US).over(frame)
        return F.when(summed > 0, F.col("amount") / mean).otherwise(F.lit(NO_VALUE))
    raise ValueError(f"no window column for {f.aggregate}")


# ------------------------------------------------------------------------------ reported frauds


def _fraud_spells(base: DataFrame, labels: DataFrame) -> DataFrame:
    """transaction_id, customer_id, terminal_id, e (event us), r (us: a report that made it a
    fraud), end (us: the next report that made it genuine; null: none) of every fraud spell of
    the transactions. Only valid reports count (not before e); reports at one time are one
    verdict, fraud if any of them says fraud."""
    reports = labels.select(
        TRANSACTION_ID, F.unix_micros(F.col("reported_time")).alias("r"), F.col("is_fraud").cast("int").alias("f")
    )
    verdicts = (
        base.select(TRANSACTION_ID, "customer_id", "terminal_id", F.col(_US).alias("e"))
        .join(reports, on=TRANSACTION_ID, how="inner")
        .filter(F.col("r") >= F.col("e"))
        .groupBy(TRANSACTION_ID, "customer_id", "terminal_id", "e", "r")
        .agg(F.max("f").alias("f"))
    )
    by_time = Window.partitionBy(TRANSACTION_ID).orderBy("r")
    # The verdicts that change the status (which starts genuine): fraud, genuine, fraud, ...
    changes = verdicts.withColumn("_before", F.lag("f").over(by_time)).filter(
        F.col("f") != F.coalesce(F.col("_before"), F.lit(0))
    )
    return (
        changes.withColumn("end", F.lead("r").over(by_time))
        .filter(F.col("f") == 1)
        .select(TRANSACTION_ID, "customer_id", "terminal_id", "e", "r", "end")
    )


def _fraud_counts(base: DataFrame, frauds: DataFrame, features: list[FreshFeature]) -> DataFrame:
    """transaction_id and one count column per feature: the entity's transactions of
    [t-W, t) reported fraud at t, as a running sum of the spells' +1 / -1 events before t."""
    key = features[0].key
    stops = {f.name: F.least(F.col("e") + F.lit(f.window_us), F.coalesce(F.col("end"), F.col("e") + F.lit(f.window_us)))
             for f in features}
    counts = {f.name: F.col("r") < stops[f.name] for f in features}

    def rows(time: Column, deltas: dict[str, Column], query: bool, source: DataFrame) -> DataFrame:
        ids = F.col(TRANSACTION_ID) if query else F.lit(None).cast("long").alias(TRANSACTION_ID)
        return source.select(
            ids, F.col(key), time.alias(_TIME), F.lit(query).alias(_QUERY),
            *[deltas.get(f.name, F.lit(0)).cast("long").alias(f.name) for f in features],
        )

    def signed(name: str, sign: int) -> Column:  # a spell that starts at or after its stop never counts: 0
        return F.when(counts[name], F.lit(sign)).otherwise(F.lit(0))

    union = rows(F.col(_US), {}, True, base).unionByName(
        rows(F.col("r"), {f.name: signed(f.name, 1) for f in features}, False, frauds)
    )
    for f in features:  # the fraud still counts at t = its stop (e >= t-W, the latest verdict before t), not after
        union = union.unionByName(rows(stops[f.name], {f.name: signed(f.name, -1)}, False, frauds))
    before = Window.partitionBy(key).orderBy(_TIME).rangeBetween(Window.unboundedPreceding, -1)
    running = [F.coalesce(F.sum(f.name).over(before), F.lit(0)).cast("long").alias(f.name) for f in features]
    return union.select(TRANSACTION_ID, _QUERY, *running).filter(F.col(_QUERY)).drop(_QUERY)
