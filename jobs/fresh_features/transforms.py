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


def lookback(day: date) -> tuple[date, date]:
    """The first and last silver day that day `day` reads (both partitions included)."""
    return day - timedelta(days=LOOKBACK_DAYS), day


def day_fresh_features(transactions: DataFrame, reports: DataFrame, day: date) -> DataFrame:
    """One row per transaction of `day` (its `tx_date`): ids, event time, every fresh feature.

    transactions: silver transactions (with `tx_date`) of at least `lookback(day)`; reports: every label report
    (`silver.label_reports`) of the same days, any number per transaction id.
    """
    from pyspark.sql import functions as F

    from cardscore.features.fresh_spark import fresh_features

    valued = fresh_features(
        transactions.select(*TX_COLUMNS, "tx_date"),  # silver's UTC day, whatever the session zone
        reports.select("transaction_id", "is_fraud", "reported_time"),
    )
    return valued.where(F.col("tx_date") == F.lit(day.isoformat()).cast("date")).select(*OUTPUT_COLUMNS)
