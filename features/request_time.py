"""Request-time features: computed from the transaction itself, at request time, defined once.

The definition (`_weekend`, `_night`) is integer arithmetic on UTC epoch microseconds, which
Python ints and numpy int64 arrays evaluate identically, so every caller runs the same lines:

* `request_time_record` - one transaction, plain Python (the stream scorer);
* `request_time_frame` - a pandas frame, vectorised (Spark `mapInPandas`, see
  `features.transform.with_request_time_features`);
* `request_time_odfv` - Feast's python-mode on-demand feature view (dict of lists).

Definitions (the handbook's): tx_amount is the amount; tx_during_weekend is 1 when the UTC
weekday is Saturday or Sunday; tx_during_night is 1 when the UTC hour is <= 6 (00:00-06:59).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from cardscore.features.definitions import (
    TX_AMOUNT,
    TX_DATETIME,
    TX_DURING_NIGHT,
    TX_DURING_WEEKEND,
)

MICROS_PER_HOUR = 3_600_000_000
MICROS_PER_DAY = 24 * MICROS_PER_HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _weekend(epoch_us: Any) -> Any:
    # 1970-01-01 was a Thursday: (days + 3) % 7 numbers Monday as 0, so 5 and 6 are the weekend.
    # Floor division keeps this right before 1970 too (Python and numpy both floor).
    weekday = (epoch_us // MICROS_PER_DAY + 3) % 7
    return (weekday >= 5) * 1


def _night(epoch_us: Any) -> Any:
    hour = (epoch_us // MICROS_PER_HOUR) % 24
    return (hour <= 6) * 1


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
    micros = epoch_micros(event_time)
    return {
        TX_AMOUNT: float(amount),
        TX_DURING_WEEKEND: float(_weekend(micros)),
        TX_DURING_NIGHT: float(_night(micros)),
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
    micros = np.asarray(epoch_us, dtype=np.int64)
    return {
        TX_AMOUNT: np.asarray(amount, dtype=np.float64),
        TX_DURING_WEEKEND: _weekend(micros).astype(np.float64),
        TX_DURING_NIGHT: _night(micros).astype(np.float64),
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
