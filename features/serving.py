"""Serve daily snapshots to the transactions of their day, in the engine: an equi-join.

Every transaction of day D is served D's snapshot row of its customer and terminal, and
nothing else (features/README.md). So the point-in-time join that Feast performs for a
training set reduces, for a set of transactions, to an equi-join on (entity key, UTC day)
with the snapshot rows: no as-of search, no time range, one hash join per entity. Training
keeps Feast's point-in-time retrieval (`features.retrieval`); `tests/scoring/test_feature_serving.py`
checks that both give identical feature rows, unknown entities and their defaults included.

    served = day_features(entities, customer_rows, terminal_rows)

`entities` are Feast-style entity rows (customer_id, terminal_id, event_timestamp, tx_amount;
any other columns are kept); `customer_rows` / `terminal_rows` are gold snapshot rows (any
days: the join matches each transaction with its own UTC day). The result has the entity
columns, every name of `MODEL_FEATURES` (double) and two booleans saying whether the
customer / terminal had a row on the transaction's day. An entity without one gets the
definitions' defaults (`UNKNOWN_ENTITY_DEFAULT`), exactly what Feast's retrieval fills in.
Request-time features are column expressions generated from `features.request_time`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_KEY,
    EVENT_TIMESTAMP,
    MODEL_FEATURES,
    SNAPSHOT_DATE,
    TERMINAL_FEATURES,
    TERMINAL_KEY,
    TX_AMOUNT,
    UNKNOWN_ENTITY_DEFAULT,
)
from cardscore.features.request_time import request_time_spark_columns, utc_day_number_column

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

CUSTOMER_IN_SNAPSHOT = "customer_in_snapshot"
TERMINAL_IN_SNAPSHOT = "terminal_in_snapshot"
_DAY = "__cardscore_day"
_FOUND = "__cardscore_found_"


def day_features(entities: DataFrame, customer_rows: DataFrame, terminal_rows: DataFrame) -> DataFrame:
    """The entity rows plus every model feature (double) and the two in-snapshot flags."""
    from pyspark.sql import functions as F

    missing = [c for c in (CUSTOMER_KEY, TERMINAL_KEY, EVENT_TIMESTAMP, TX_AMOUNT) if c not in entities.columns]
    if missing:
        raise ValueError(f"the entity rows lack column(s) {missing}")
    epoch_us = F.unix_micros(F.col(EVENT_TIMESTAMP))
    tx_day = utc_day_number_column(epoch_us)
    snapshot_day = F.datediff(F.col(SNAPSHOT_DATE), F.lit("1970-01-01").cast("date")).cast("long")

    def side(rows: DataFrame, key: str, names: tuple[str, ...]) -> DataFrame:
        return rows.select(
            F.col(key), snapshot_day.alias(_DAY), *[F.col(n) for n in names], F.lit(True).alias(_FOUND + key)
        )

    kept = list(entities.columns)
    joined = (
        entities.withColumn(_DAY, tx_day)
        .join(side(customer_rows, CUSTOMER_KEY, CUSTOMER_FEATURES), [CUSTOMER_KEY, _DAY], "left")
        .join(side(terminal_rows, TERMINAL_KEY, TERMINAL_FEATURES), [TERMINAL_KEY, _DAY], "left")
    )
    flags = request_time_spark_columns(epoch_us)
    values = {TX_AMOUNT: F.col(TX_AMOUNT).cast("double"), **flags}
    for name in (*CUSTOMER_FEATURES, *TERMINAL_FEATURES):
        values[name] = F.coalesce(F.col(name).cast("double"), F.lit(UNKNOWN_ENTITY_DEFAULT))
    return joined.select(
        *[F.col(c) for c in kept if c not in MODEL_FEATURES],
        *[values[name].alias(name) for name in MODEL_FEATURES],
        F.col(_FOUND + CUSTOMER_KEY).isNotNull().alias(CUSTOMER_IN_SNAPSHOT),
        F.col(_FOUND + TERMINAL_KEY).isNotNull().alias(TERMINAL_IN_SNAPSHOT),
    )
