"""Pure transformations of the fresh_features stage: silver frames in, the day's rows out.

The window logic is `features.fresh_spark.fresh_features` (one declaration, exact, oracle
tested); this module only chooses the inputs a day needs and shapes the output.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from cardscore.features.fresh import FRESH_FEATURE_NAMES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Days of silver a day D reads: [D - LOOKBACK_DAYS, D]. The longest window is 30 days: a
# transaction t of D sees events e >= t - 30 d >= D - 30 d, and a fraud report counts only at
# r >= e (earlier reports are invalid), so reports of [D - 30, D] are every one that matters.
LOOKBACK_DAYS = 30
TX_COLUMNS = ("transaction_id", "customer_id", "terminal_id", "amount", "event_time")
OUTPUT_COLUMNS = ("transaction_id", "customer_id", "terminal_id", "event_time",
                  *FRESH_FEATURE_NAMES, "tx_date")


def lookback(first: date, last: date | None = None) -> tuple[date, date]:
    """The first and last silver day that the days [first, last] read (both partitions
    included); `last` defaults to `first` (one day)."""
    return first - timedelta(days=LOOKBACK_DAYS), first if last is None else last


def range_fresh_features(transactions: DataFrame, reports: DataFrame, first: date, last: date) -> DataFrame:
    """One row per transaction of the days [first, last] (its `tx_date`): ids, event time,
    every fresh feature. One window pass serves the whole range: each transaction of the
    look-back is read once, however many days the range has.

    transactions: silver transactions (with `tx_date`) of at least `lookback(first, last)`;
    reports: every label report (`silver.label_reports`) of the same days, any number per id.
    """
    from pyspark.sql import functions as F

    from cardscore.features.fresh_spark import fresh_features

    valued = fresh_features(
        transactions.select(*TX_COLUMNS, "tx_date"),  # silver's UTC day, whatever the session zone
        reports.select("transaction_id", "is_fraud", "reported_time"),
    )
    between = (F.lit(first.isoformat()).cast("date"), F.lit(last.isoformat()).cast("date"))
    return valued.where(F.col("tx_date").between(*between)).select(*OUTPUT_COLUMNS)


def day_fresh_features(transactions: DataFrame, reports: DataFrame, day: date) -> DataFrame:
    """`range_fresh_features` of the one day `day`."""
    return range_fresh_features(transactions, reports, day, day)
