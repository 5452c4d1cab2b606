"""The history a streaming fresh-feature step starts from: the lake's silver transactions and
label reports of the last 30 days plus the allowed lateness before the newest ingested day.

The stream carries the days after the last ingest; without this, a day streamed after the
nightly would see no history before its own midnight, unlike the offline values (which read
the 30 days before each day). Read through the engine (Sail, or Spark with Delta), so it reads
the tables' current versions. Records have the validated contract's shape (times as UTC epoch
microseconds), the same that the steps get from the topics.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from cardscore.core import catalog
from cardscore.core.logs import get_logger
from cardscore.features.fresh import (
    ALLOWED_LATENESS_US,
    DAY_US,
    ENTITY_KEYS,
    Entity,
    longest_window_us,
)

if TYPE_CHECKING:
    from cardscore.core.lake import Lake

log = get_logger("features.fresh_history")

HistoryEvent = tuple[str, dict[str, Any]]  # ("transaction" | "label", record)


def lookback_days(entity: Entity) -> int:
    """Whole days of history the entity's features need before a streamed day (ceil)."""
    return -(-(longest_window_us(entity) + ALLOWED_LATENESS_US) // DAY_US)


def history_events(transactions: list[dict[str, Any]], labels: list[dict[str, Any]]) -> list[HistoryEvent]:
    """Rows as history events in time order (transactions before reports at equal times)."""
    timed = [(r["event_time"], 0, ("transaction", r)) for r in transactions]
    timed += [(r["reported_time"], 1, ("label", r)) for r in labels]
    timed.sort(key=lambda item: (item[0], item[1]))
    return [item[2] for item in timed]


def lake_history(lake: Lake, entity: Entity) -> Callable[[Callable[[int], bool]], list[HistoryEvent]]:
    """A loader: given which entity keys are wanted, their transactions and every label report
    of the look-back before (and including) the newest silver day; nothing when silver is empty."""

    def load(wanted: Callable[[int], bool]) -> list[HistoryEvent]:
        from pyspark.sql import functions as F

        if not lake.exists(catalog.SILVER_TRANSACTIONS):
            log.warning("fresh_history.no_silver", table=catalog.SILVER_TRANSACTIONS)
            return []
        silver = lake.read(catalog.SILVER_TRANSACTIONS)
        newest = silver.agg(F.max("tx_date")).collect()[0][0]
        if newest is None:
            return []
        first: date = newest - timedelta(days=lookback_days(entity))
        tx = (silver.where(F.col("tx_date") >= F.lit(first))
              .select("transaction_id", "customer_id", "terminal_id",
                      F.unix_micros("event_time").alias("event_time"), "amount")
              .toPandas())
        key = ENTITY_KEYS[entity]
        tx = tx[[bool(wanted(int(k))) for k in tx[key]]]
        transactions = [
            {"transaction_id": int(r.transaction_id), "customer_id": int(r.customer_id),
             "terminal_id": int(r.terminal_id), "event_time": int(r.event_time), "amount": float(r.amount)}
            for r in tx.itertuples(index=False)
        ]
        labels: list[dict[str, Any]] = []
        if lake.exists(catalog.SILVER_LABEL_REPORTS):
            reports = (lake.read(catalog.SILVER_LABEL_REPORTS).where(F.col("reported_date") >= F.lit(first))
                       .select("transaction_id", "is_fraud", F.unix_micros("reported_time").alias("reported_time"))
                       .toPandas())
            ids = {r["transaction_id"] for r in transactions}
            labels = [{"transaction_id": int(r.transaction_id), "is_fraud": bool(r.is_fraud),
                       "reported_time": int(r.reported_time)}
                      for r in reports.itertuples(index=False) if int(r.transaction_id) in ids]
        log.info("fresh_history.loaded", entity=entity.value, first_day=first.isoformat(),
                 newest_day=newest.isoformat(), transactions=len(transactions), labels=len(labels))
        return history_events(transactions, labels)

    return load
