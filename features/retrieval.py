"""Point-in-time feature retrieval through Feast, for training (pandas) and batch scoring (Spark).

Both take one entity row per transaction (`transaction_id, customer_id, terminal_id,
event_timestamp` tz-aware UTC, `tx_amount`; any other columns are kept) and return those
columns plus every name in `MODEL_FEATURES` (float64), through Feast's
`get_historical_features` with the model's FeatureService on the Spark offline store.

How a transaction meets its snapshot: Feast joins a row of timestamp T with the latest
snapshot row in [T - TTL, T]. With snapshots at D 00:00 and a TTL of one day, a transaction at
exactly D 00:00:00 would also reach D-1's row when its entity is absent from D's snapshot. So
Feast is given the middle of the transaction's UTC day (D 12:00) as the join time, which meets
D's row and nothing else; the transaction's own time travels as the request field
`tx_datetime` for the request-time features, and is put back afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cardscore.core.logs import get_logger
from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_KEY,
    CUSTOMER_VIEW,
    EVENT_TIMESTAMP,
    FEATURE_DTYPE,
    FEATURE_SERVICE_NAME,
    MODEL_FEATURES,
    TERMINAL_FEATURES,
    TERMINAL_KEY,
    TERMINAL_VIEW,
    TX_AMOUNT,
    TX_DATETIME,
    UNKNOWN_ENTITY_DEFAULT,
)
from cardscore.features.feast_patches import isolate_temp_views
from cardscore.features.store import bound_session, ensure_applied, feature_store

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyspark.sql import DataFrame, SparkSession

    from cardscore.core.config import Settings

REQUIRED_COLUMNS = (CUSTOMER_KEY, TERMINAL_KEY, EVENT_TIMESTAMP, TX_AMOUNT)
ENTITY_FEATURES = (*CUSTOMER_FEATURES, *TERMINAL_FEATURES)
_FIXED_VIEWS = ("entity_dataframe", f"{CUSTOMER_VIEW}__cleaned", f"{TERMINAL_VIEW}__cleaned")
_ROW = "__cardscore_row"
_DAY_SECONDS = 86_400
log = get_logger("features.retrieval")


class EntityFrameError(ValueError):
    """The entity frame lacks a column or has a bad type."""


def historical_features(
    settings: Settings, spark: SparkSession, entity_df: pd.DataFrame, store: FeatureStore | None = None
) -> pd.DataFrame:
    """The entity rows (same order, same columns) plus every model feature, float64.

    An entity absent from its transaction's day snapshot gets 0.0 for its features (it had no
    transaction in its look-back, which is exactly what the definitions give).
    """
    _check_columns(entity_df.columns, entity_df.dtypes.to_dict())
    if entity_df.empty:  # Feast cannot upload an empty frame; the answer is known
        out = entity_df.reset_index(drop=True).copy()
        for name in MODEL_FEATURES:
            out[name] = out[name].astype(FEATURE_DTYPE) if name in out else pd.Series(dtype=FEATURE_DTYPE)
        return out
    times = _utc(entity_df[EVENT_TIMESTAMP])
    query = pd.DataFrame(
        {
            _ROW: np.arange(len(entity_df), dtype=np.int64),
            CUSTOMER_KEY: entity_df[CUSTOMER_KEY].to_numpy(dtype=np.int64),
            TERMINAL_KEY: entity_df[TERMINAL_KEY].to_numpy(dtype=np.int64),
            TX_AMOUNT: entity_df[TX_AMOUNT].to_numpy(dtype=np.float64),
            TX_DATETIME: times.to_numpy(),
            EVENT_TIMESTAMP: (times.dt.floor("D") + pd.Timedelta(hours=12)).to_numpy(),
        }
    )
    query[TX_DATETIME] = pd.to_datetime(query[TX_DATETIME], utc=True).dt.as_unit("us")
    query[EVENT_TIMESTAMP] = pd.to_datetime(query[EVENT_TIMESTAMP], utc=True).dt.as_unit("us")
    store = ensure_applied(settings, store or feature_store(settings))
    with bound_session(spark):
        service = store.get_feature_service(FEATURE_SERVICE_NAME)
        job = store.get_historical_features(entity_df=query, features=service)
        job.query = isolate_temp_views(job.query, _FIXED_VIEWS)
        found = job.to_df()  # Feast applies the python-mode on-demand view here
    found = found.sort_values(_ROW, kind="mergesort").reset_index(drop=True)
    if len(found) != len(entity_df) or not np.array_equal(found[_ROW].to_numpy(), query[_ROW].to_numpy()):
        raise RuntimeError(
            f"Feast returned {len(found)} rows for {len(entity_df)} entity rows; expected one each"
        )
    _log_unknown(found[CUSTOMER_FEATURES[0]].isna(), found[TERMINAL_FEATURES[0]].isna(), "pandas")
    out = entity_df.reset_index(drop=True).copy()
    for name in MODEL_FEATURES:
        column = found[name] if name != TX_AMOUNT else query[TX_AMOUNT]
        values = column.astype(FEATURE_DTYPE)
        if name in ENTITY_FEATURES:
            values = values.fillna(UNKNOWN_ENTITY_DEFAULT)
        out[name] = values.to_numpy()
    return out


def historical_features_spark(
    settings: Settings, spark: SparkSession, entity_sdf: DataFrame, store: FeatureStore | None = None
) -> DataFrame:
    """The same join as `historical_features`, kept in the engine (Feast's Spark retrieval job,
    request-time features by `mapInPandas`): nothing is collected to the driver.

    Returns the entity columns plus every model feature (double). The result does not depend
    on later retrievals in the same session (Feast's temporary views are made unique).
    """
    from pyspark.sql import functions as F

    from cardscore.features.transform import with_request_time_features

    _check_columns(entity_sdf.columns, dict(entity_sdf.dtypes))
    entity_columns = list(entity_sdf.columns)
    kept_columns = [c for c in entity_columns if c not in MODEL_FEATURES]
    if entity_sdf.isEmpty():  # Feast's time-range query fails on no rows; the answer is known
        return entity_sdf.select(
            *kept_columns, *[F.lit(None).cast("double").alias(name) for name in MODEL_FEATURES]
        )
    day_start = F.floor(F.unix_micros(F.col(EVENT_TIMESTAMP)) / 1_000_000 / _DAY_SECONDS)
    query = entity_sdf.withColumn(TX_DATETIME, F.col(EVENT_TIMESTAMP)).withColumn(
        EVENT_TIMESTAMP,
        F.timestamp_seconds(day_start.cast("long") * _DAY_SECONDS + _DAY_SECONDS // 2),
    )
    store = ensure_applied(settings, store or feature_store(settings))
    with bound_session(spark):
        service = store.get_feature_service(FEATURE_SERVICE_NAME)
        job = store.get_historical_features(entity_df=query, features=service)
        job.query = isolate_temp_views(job.query, _FIXED_VIEWS)
        joined = job.to_spark_df()  # feature views only: on-demand views are not applied here
    with_flags = with_request_time_features(joined, TX_AMOUNT, TX_DATETIME)
    features = []
    for name in MODEL_FEATURES:
        value = F.col(name).cast("double")
        if name in ENTITY_FEATURES:
            value = F.coalesce(value, F.lit(UNKNOWN_ENTITY_DEFAULT))
        features.append(value.alias(name))
    kept = [
        F.col(TX_DATETIME).alias(EVENT_TIMESTAMP) if c == EVENT_TIMESTAMP else F.col(c)
        for c in kept_columns
    ]
    return with_flags.select(*kept, *features)


# ------------------------------------------------------------------------------ helpers


def _check_columns(columns, dtypes: dict) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise EntityFrameError(
            f"the entity frame lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)} "
            "(and usually transaction_id)"
        )
    reserved = [c for c in (TX_DATETIME, _ROW) if c in columns]
    if reserved:
        raise EntityFrameError(f"the entity frame must not have column(s) {reserved} (used internally)")
    kind = dtypes[EVENT_TIMESTAMP]
    if isinstance(kind, str):  # Spark: "timestamp" (UTC instants) is required, not timestamp_ntz
        if kind != "timestamp":
            raise EntityFrameError(f"{EVENT_TIMESTAMP} must be a timestamp column, got {kind}")
    elif not isinstance(kind, pd.DatetimeTZDtype):
        raise EntityFrameError(
            f"{EVENT_TIMESTAMP} must be timezone-aware (UTC), got {kind}; e.g. "
            "pd.to_datetime(values, utc=True)"
        )


def _utc(series: pd.Series) -> pd.Series:
    return series.dt.tz_convert("UTC").reset_index(drop=True)


def _log_unknown(customer_missing: pd.Series, terminal_missing: pd.Series, path: str) -> None:
    log.info(
        "features.historical",
        path=path,
        rows=len(customer_missing),
        unknown_customers=int(customer_missing.sum()),
        unknown_terminals=int(terminal_missing.sum()),
    )
