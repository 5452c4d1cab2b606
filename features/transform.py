"""Pure feature transformations (DataFrame in, DataFrame out) shared by every engine.

Snapshots are computed for a whole range of days in one pass. Transactions are aggregated per
entity and day; each entity gets a dense calendar (one row per day, from its first day in the
look-back to the last snapshot day) with running totals; the total over days
[D-delay-w, D-delay-1] is the difference of the running total lagged by delay+1 and by
delay+1+w days. Counts are integers and amounts exact decimals, so the differences are exact.
The rows whose longest window is not empty are the active entities: exactly one row per
active entity and day. Each transaction is read once whatever the range.

Only the DataFrame API common to classic Spark and Spark Connect is used (Sail runs it).
Day numbers are days since 1970-01-01, taken from the contract's UTC date columns, so nothing
depends on the session time zone.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_KEY,
    CUSTOMER_LOOKBACK_DAYS,
    DELAY_DAYS,
    EVENT_TIMESTAMP,
    SNAPSHOT_DATE,
    TERMINAL_FEATURES,
    TERMINAL_KEY,
    TERMINAL_LOOKBACK_DAYS,
    TX_AMOUNT,
    TX_DURING_NIGHT,
    TX_DURING_WEEKEND,
    WINDOWS,
    customer_count,
    customer_mean,
    day_number,
    terminal_count,
    terminal_risk,
)
from cardscore.features.request_time import request_time_spark_columns

# Column order of the snapshots (the gold tables add created_at before snapshot_date).
CUSTOMER_COLUMNS = (CUSTOMER_KEY, *CUSTOMER_FEATURES, EVENT_TIMESTAMP, SNAPSHOT_DATE)
TERMINAL_COLUMNS = (TERMINAL_KEY, *TERMINAL_FEATURES, EVENT_TIMESTAMP, SNAPSHOT_DATE)

# Amounts are summed as exact decimals (rounded to 6 decimal places first), then divided as
# doubles: window sums over doubles drift (Sail's range windows returned -1e-13 for a window
# whose only amount was 0.0), and exact sums give the same means on every engine. Scale 6
# survives Spark's decimal precision rules through sums and differences at precision 38.
AMOUNT_SUM_TYPE = T.DecimalType(38, 6)

_DAY = "day"
_COUNT = "n_tx"
_TOTAL = "total_amount"


def customer_source_range(first: date, last: date) -> tuple[int, int]:
    """Transaction day numbers [lo, hi] the customer snapshots of [first, last] read."""
    return day_number(first) - CUSTOMER_LOOKBACK_DAYS, day_number(last) - 1


def terminal_source_range(first: date, last: date) -> tuple[int, int]:
    """Transaction day numbers [lo, hi] the terminal snapshots of [first, last] read."""
    return day_number(first) - TERMINAL_LOOKBACK_DAYS, day_number(last) - DELAY_DAYS - 1


def day_of(date_column: str) -> Column:
    """Day number of a DATE column (days since 1970-01-01; no time zone involved)."""
    return F.datediff(F.col(date_column), F.lit("1970-01-01").cast("date"))


def customer_snapshots(transactions: DataFrame, first: date, last: date) -> DataFrame:
    """Customer features for every day D in [first, last], from transactions in [D-w, D).

    `transactions` follows the silver contract (customer_id, amount, tx_date at least); rows
    outside the look-back are ignored. One row per customer with a transaction in [D-30, D).
    """
    lo, hi = customer_source_range(first, last)
    daily = (
        transactions.select(CUSTOMER_KEY, day_of("tx_date").alias(_DAY), "amount")
        .where(F.col(_DAY).between(lo, hi))
        .groupBy(CUSTOMER_KEY, _DAY)
        .agg(
            F.count(F.lit(1)).alias(_COUNT),
            F.sum(F.col("amount").cast(AMOUNT_SUM_TYPE)).alias(_TOTAL),
        )
    )
    windowed = _window_totals(daily, CUSTOMER_KEY, first, last, delay=0, with_amounts=True)
    features = []
    for w in WINDOWS:
        count, total = F.col(f"{_COUNT}_{w}"), F.col(f"{_TOTAL}_{w}")
        features.append(count.alias(customer_count(w)))
        features.append(
            F.when(count > 0, total.cast("double") / count).otherwise(F.lit(0.0)).alias(
                customer_mean(w)
            )
        )
    return windowed.select(CUSTOMER_KEY, *features, *_snapshot_columns()).select(*CUSTOMER_COLUMNS)


def terminal_snapshots(
    transactions: DataFrame, labels: DataFrame, first: date, last: date
) -> DataFrame:
    """Terminal features for every day D in [first, last].

    Window w covers transactions in [D-7-w, D-7); risk = frauds / transactions there (0 when
    there are none), counting a fraud only if its label's reported_time < D 00:00 UTC (and not
    before its transaction's day). One row per terminal with a transaction in [D-37, D-7).
    `labels` follows the silver label contract (transaction_id, is_fraud, reported_date).
    """
    lo, hi = terminal_source_range(first, last)
    in_range = transactions.select(
        "transaction_id", TERMINAL_KEY, day_of("tx_date").alias(_DAY)
    ).where(F.col(_DAY).between(lo, hi))
    daily = in_range.groupBy(TERMINAL_KEY, _DAY).agg(F.count(F.lit(1)).alias(_COUNT))
    windowed = _window_totals(daily, TERMINAL_KEY, first, last, delay=DELAY_DAYS, with_amounts=False)
    frauds = _known_frauds(in_range, labels, first, last)
    joined = windowed.join(frauds, [TERMINAL_KEY, _DAY], "left")
    features = []
    for w in WINDOWS:
        count, fraud = F.col(f"{_COUNT}_{w}"), F.coalesce(F.col(f"fraud_{w}"), F.lit(0))
        features.append(count.alias(terminal_count(w)))
        features.append(
            F.when(count > 0, fraud.cast("double") / count).otherwise(F.lit(0.0)).alias(
                terminal_risk(w)
            )
        )
    return joined.select(TERMINAL_KEY, *features, *_snapshot_columns()).select(*TERMINAL_COLUMNS)


def active_entity_count(
    transactions: DataFrame, key: str, first_lag: int, last_lag: int, first: date, last: date
) -> DataFrame:
    """Independent count of (entity, day) pairs that must have a snapshot row in [first, last].

    An entity is active on D when it has a transaction on a day t with first_lag <= D-t <=
    last_lag (customers 1..30, terminals 8..37). Computed by expanding each active day to the
    days it covers, not with the windows above, so the gate checks one against the other.
    Returns one row: `rows`.
    """
    d0, d1 = day_number(first), day_number(last)
    days = (
        transactions.select(key, day_of("tx_date").alias(_DAY))
        .where(F.col(_DAY).between(d0 - last_lag, d1 - first_lag))
        .distinct()
    )
    covered = days.select(
        key, F.explode(F.sequence(F.col(_DAY) + first_lag, F.col(_DAY) + last_lag)).alias("d")
    ).where(F.col("d").between(d0, d1))
    return covered.distinct().agg(F.count(F.lit(1)).alias("rows"))


def with_request_time_features(
    df: DataFrame, amount_column: str = TX_AMOUNT, time_column: str = EVENT_TIMESTAMP
) -> DataFrame:
    """`df` plus tx_during_weekend and tx_during_night (double), as column expressions generated
    from the one definition (`features.request_time.REQUEST_TIME_EXPRESSIONS`): no Python UDF,
    no pass of their own. `amount_column` is kept for callers; the flags only read the time."""
    # Epoch microseconds, not calendar functions: those read the session's time zone.
    flags = request_time_spark_columns(F.unix_micros(F.col(time_column)))
    return df.select("*", *[flags[name].alias(name) for name in (TX_DURING_WEEKEND, TX_DURING_NIGHT)])


# ------------------------------------------------------------------------------ internals


def _window_totals(
    daily: DataFrame, key: str, first: date, last: date, delay: int, with_amounts: bool
) -> DataFrame:
    """(key, day, n_tx_w[, total_amount_w] per window w) for each day D in [first, last] on
    which the entity's longest window [D-delay-30, D-delay-1] holds a transaction."""
    d0, d1 = day_number(first), day_number(last)
    values = [_COUNT, _TOTAL] if with_amounts else [_COUNT]
    zeros = {_COUNT: F.lit(0).cast("long"), _TOTAL: F.lit(0).cast(AMOUNT_SUM_TYPE)}
    # A dense calendar: lags by k rows are then lags by k days.
    calendar = (
        daily.groupBy(key)
        .agg(F.min(_DAY).alias("first_day"))
        .select(key, F.explode(F.sequence(F.col("first_day"), F.lit(d1))).alias(_DAY))
    )
    dense = calendar.join(daily, [key, _DAY], "left").select(
        key, _DAY, *[F.coalesce(F.col(v), zeros[v]).alias(v) for v in values]
    )
    by_day = Window.partitionBy(key).orderBy(_DAY)
    so_far = by_day.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    running = dense.select(key, _DAY, *[F.sum(v).over(so_far).alias(f"upto_{v}") for v in values])
    totals = []
    for w in WINDOWS:
        for v in values:
            through_end = F.coalesce(F.lag(f"upto_{v}", delay + 1).over(by_day), zeros[v])
            before_start = F.coalesce(F.lag(f"upto_{v}", delay + 1 + w).over(by_day), zeros[v])
            totals.append((through_end - before_start).alias(f"{v}_{w}"))
    return running.select(key, _DAY, *totals).where(
        F.col(_DAY).between(d0, d1) & (F.col(f"{_COUNT}_{max(WINDOWS)}") > 0)
    )


def _known_frauds(in_range: DataFrame, labels: DataFrame, first: date, last: date) -> DataFrame:
    """Per (terminal, D): frauds known by D among the transactions of each delayed window.

    A fraud on day t reported on day r counts for window w at D when D-7-w <= t <= D-8 and
    r <= D-1 (reported_time < D 00:00 UTC). Frauds are few, so each is expanded to its days.
    """
    d0, d1 = day_number(first), day_number(last)
    fraud_labels = labels.where(F.col("is_fraud")).select(
        "transaction_id", day_of("reported_date").alias("reported_day")
    )
    frauds = in_range.join(fraud_labels, "transaction_id").where(
        F.col("reported_day") >= F.col(_DAY)  # a label cannot precede its transaction's day
    )
    start = F.greatest(F.col(_DAY) + DELAY_DAYS + 1, F.col("reported_day") + 1, F.lit(d0))
    end = F.least(F.col(_DAY) + DELAY_DAYS + max(WINDOWS), F.lit(d1))
    expanded = frauds.select(
        TERMINAL_KEY,
        F.col(_DAY).alias("tx_day"),
        F.explode(F.when(start <= end, F.sequence(start, end))).alias(_DAY),
    )
    lag = F.col(_DAY) - F.col("tx_day")
    return expanded.groupBy(TERMINAL_KEY, _DAY).agg(
        *[
            F.sum(F.when(lag <= DELAY_DAYS + w, 1).otherwise(0)).cast("long").alias(f"fraud_{w}")
            for w in WINDOWS
        ]
    )


def _snapshot_columns() -> list[Column]:
    return [
        F.timestamp_seconds(F.col(_DAY).cast("long") * 86400).alias(EVENT_TIMESTAMP),
        F.date_add(F.lit("1970-01-01").cast("date"), F.col(_DAY).cast("int")).alias(SNAPSHOT_DATE),
    ]
