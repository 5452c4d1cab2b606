"""Request-time features: computed from the transaction itself, at request time, defined once.

The definition is an expression tree (`features.expressions`) over the transaction's UTC epoch
microseconds, `REQUEST_TIME_EXPRESSIONS`; every caller runs that one tree:

* `request_time_record` - one transaction, plain Python ints (the stream scorer);
* `request_time_arrays` / `request_time_frame` - numpy int64 arrays, vectorised;
* `request_time_odfv` - Feast's python-mode on-demand feature view (dict of lists);
* `request_time_spark_columns` - Spark Column expressions generated from the tree (the batch
  scorer and the in-engine retrieval: no Python UDF, no second copy).

Definitions (the handbook's): tx_amount is the amount; tx_during_weekend is 1 when the UTC
weekday is Saturday or Sunday; tx_during_night is 1 when the UTC hour is <= 6 (00:00-06:59).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cardscore.features.definitions import (
    TX_AMOUNT,
    TX_DATETIME,
    TX_DURING_NIGHT,
    TX_DURING_WEEKEND,
)
from cardscore.features.expressions import Expr, Input, as_float, evaluate, to_column

if TYPE_CHECKING:
    from pyspark.sql import Column

MICROS_PER_HOUR = 3_600_000_000
MICROS_PER_DAY = 24 * MICROS_PER_HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The one definition. Floor division keeps it right before 1970 too (every emitter floors).
EPOCH_US = Input("epoch_us")  # the transaction's UTC epoch microseconds (int64)
DAY_NUMBER = EPOCH_US // MICROS_PER_DAY  # the UTC day: days since 1970-01-01
# 1970-01-01 was a Thursday: (days + 3) % 7 numbers Monday as 0, so 5 and 6 are the weekend.
WEEKDAY = (DAY_NUMBER + 3) % 7
HOUR = (EPOCH_US // MICROS_PER_HOUR) % 24
REQUEST_TIME_EXPRESSIONS: dict[str, Expr] = {
    TX_DURING_WEEKEND: as_float(WEEKDAY >= 5),
    TX_DURING_NIGHT: as_float(HOUR <= 6),
}


# ------------------------------------------------------------------------------ one record


def epoch_micros(value: int | datetime | pd.Timestamp) -> int:
    """UTC epoch microseconds of an int (already microseconds) or a datetime (naive = UTC)."""
    if isinstance(value, bool):
        raise TypeError("a timestamp cannot be a boolean")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):
        stamp = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
        return int(stamp.value) // 1000  # Timestamp.value is nanoseconds whatever the unit
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise TypeError(f"expected epoch microseconds or a datetime, got {type(value).__name__}")


def request_time_record(amount: float, event_time: int | datetime) -> dict[str, float]:
    """The request-time features of one transaction (event_time: epoch microseconds or datetime)."""
    env = {EPOCH_US.name: epoch_micros(event_time)}
    return {TX_AMOUNT: float(amount)} | {
        name: evaluate(expression, env) for name, expression in REQUEST_TIME_EXPRESSIONS.items()
    }


# ------------------------------------------------------------------------------ vectorised


def epoch_micros_array(values: Any) -> np.ndarray:
    """UTC epoch microseconds of a sequence of datetimes/Timestamps (naive = UTC) or of ints.

    Element by element in integer arithmetic (`epoch_micros`), never through pandas'
    nanosecond timestamps, which end in 2262 and would fail the whole batch on one late date.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if isinstance(values, pd.Series) and values.dtype.kind in "iu":
        return values.to_numpy(dtype=np.int64)
    return np.fromiter((epoch_micros(v) for v in values), dtype=np.int64, count=len(values))


def request_time_arrays(amount: Any, epoch_us: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised request-time features (float64 arrays) from amounts and epoch microseconds."""
    env = {EPOCH_US.name: np.asarray(epoch_us, dtype=np.int64)}
    return {TX_AMOUNT: np.asarray(amount, dtype=np.float64)} | {
        name: evaluate(expression, env) for name, expression in REQUEST_TIME_EXPRESSIONS.items()
    }


def request_time_frame(
    frame: pd.DataFrame, amount_column: str = TX_AMOUNT, micros_column: str = "event_time_us"
) -> pd.DataFrame:
    """`frame` with tx_during_weekend and tx_during_night (float64) added, from epoch micros."""
    values = request_time_arrays(frame[amount_column], frame[micros_column].to_numpy())
    out = frame.copy()
    out[TX_DURING_WEEKEND] = values[TX_DURING_WEEKEND]
    out[TX_DURING_NIGHT] = values[TX_DURING_NIGHT]
    return out


# ------------------------------------------------------------------------------ Spark


def request_time_spark_columns(epoch_us: Column) -> dict[str, Column]:
    """tx_during_weekend and tx_during_night (doubles) as Spark Columns, generated from
    `REQUEST_TIME_EXPRESSIONS`, given the transaction's UTC epoch microseconds as a long Column
    (e.g. `F.unix_micros(F.col("event_time"))`, which does not depend on the session time zone)."""
    return {
        name: to_column(expression, {EPOCH_US.name: epoch_us})
        for name, expression in REQUEST_TIME_EXPRESSIONS.items()
    }


def utc_day_number_column(epoch_us: Column) -> Column:
    """The transaction's UTC day (days since 1970-01-01, long) from its epoch microseconds: the
    same `DAY_NUMBER` the flags use, so a transaction's day and its weekday cannot disagree."""
    return to_column(DAY_NUMBER, {EPOCH_US.name: epoch_us})


# ------------------------------------------------------------------------------ Feast


def request_time_columns(inputs: dict[str, Sequence[Any]]) -> dict[str, list[float]]:
    """Request fields (tx_amount, tx_datetime; lists) -> the derived flags (lists of floats)."""
    values = request_time_arrays(inputs[TX_AMOUNT], epoch_micros_array(list(inputs[TX_DATETIME])))
    return {
        TX_DURING_WEEKEND: values[TX_DURING_WEEKEND].tolist(),
        TX_DURING_NIGHT: values[TX_DURING_NIGHT].tolist(),
    }


def request_time_odfv(inputs: dict[str, Sequence[Any]]) -> dict[str, list[float]]:
    """Feast python-mode UDF: request fields (tx_amount, tx_datetime) -> the derived flags.

    Feast may rebuild a UDF from its source text alone, so the body imports what it calls.
    tx_amount is not re-emitted: Feast cannot output a feature named like its request field,
    and the model takes the request's own value (see retrieval.py and online.py).
    """
    from cardscore.features.request_time import request_time_columns

    return request_time_columns(inputs)
