"""The feature contract: names, windows and the ordered model input, defined once.

Everything here is plain Python (no Spark, no Feast), so the stream scorer, the batch scorer,
training and the Feast repo import the same names. The semantics are written out in
`features/README.md`; the Spark code is in `features/transform.py`, the request-time
definition in `features/request_time.py`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

# Look-back windows in days (the handbook's 1, 7 and 30 days).
WINDOWS: tuple[int, ...] = (1, 7, 30)
# Terminal risk looks at transactions whose labels are (mostly) known: it ends DELAY_DAYS before D.
DELAY_DAYS = 7
MAX_WINDOW = max(WINDOWS)
# How far back a snapshot reads: customers [D-30, D); terminals [D-37, D-7).
CUSTOMER_LOOKBACK_DAYS = MAX_WINDOW
TERMINAL_LOOKBACK_DAYS = DELAY_DAYS + MAX_WINDOW

CUSTOMER_KEY = "customer_id"
TERMINAL_KEY = "terminal_id"
SNAPSHOT_DATE = "snapshot_date"  # partition column of the gold tables
EVENT_TIMESTAMP = "event_timestamp"  # D 00:00:00 UTC for the snapshot of day D
CREATED_AT = "created_at"  # when the job wrote the row


def customer_count(window: int) -> str:
    return f"customer_id_nb_tx_{window}day_window"


def customer_mean(window: int) -> str:
    return f"customer_id_avg_amount_{window}day_window"


def terminal_count(window: int) -> str:
    return f"terminal_id_nb_tx_{window}day_window"


def terminal_risk(window: int) -> str:
    return f"terminal_id_risk_{window}day_window"


CUSTOMER_FEATURES: tuple[str, ...] = tuple(
    name for w in WINDOWS for name in (customer_count(w), customer_mean(w))
)
TERMINAL_FEATURES: tuple[str, ...] = tuple(
    name for w in WINDOWS for name in (terminal_count(w), terminal_risk(w))
)
COUNT_FEATURES: tuple[str, ...] = tuple(
    [customer_count(w) for w in WINDOWS] + [terminal_count(w) for w in WINDOWS]
)

# Request-time features come from the transaction itself (features/request_time.py).
TX_AMOUNT = "tx_amount"
TX_DURING_WEEKEND = "tx_during_weekend"
TX_DURING_NIGHT = "tx_during_night"
REQUEST_FEATURES: tuple[str, ...] = (TX_AMOUNT, TX_DURING_WEEKEND, TX_DURING_NIGHT)
# Feast's on-demand view computes these two; tx_amount is the request value itself.
DERIVED_REQUEST_FEATURES: tuple[str, ...] = (TX_DURING_WEEKEND, TX_DURING_NIGHT)
# The request field that carries the transaction's own time into Feast (see retrieval.py).
TX_DATETIME = "tx_datetime"

# The model's input, in this exact order (the handbook's `input_features`, lower-case).
MODEL_FEATURES: tuple[str, ...] = (*REQUEST_FEATURES, *CUSTOMER_FEATURES, *TERMINAL_FEATURES)
# Every model feature is served as float64 (XGBoost's input; MLflow signatures stay stable).
FEATURE_DTYPE = "float64"
# Value of every customer/terminal feature of an entity absent from the day's snapshot: such an
# entity had no transaction in its look-back, and zero is exactly what the definitions give then.
UNKNOWN_ENTITY_DEFAULT = 0.0

# Feast names.
FEATURE_SERVICE_NAME = "fraud_baseline_v1"
CUSTOMER_ENTITY = "customer"
TERMINAL_ENTITY = "terminal"
CUSTOMER_VIEW = "customer_features"
TERMINAL_VIEW = "terminal_features"
REQUEST_SOURCE = "transaction_request"
REQUEST_VIEW = "request_time_features"
# A snapshot row is valid for exactly one day: the row of day D (timestamp D 00:00) serves D only.
SNAPSHOT_TTL = timedelta(days=1)

_EPOCH_DAY = date(1970, 1, 1)


def snapshot_time(day: date) -> datetime:
    """The event timestamp of day `day`'s snapshot: that day at 00:00:00 UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_number(day: date) -> int:
    """Days since 1970-01-01 (the integer the Spark code works with)."""
    return (day - _EPOCH_DAY).days


def day_from_number(number: int) -> date:
    return _EPOCH_DAY + timedelta(days=int(number))
