"""Genuine transactions, all customers and days at once (handbook chapter 3, vectorised).

Per customer and day: nb_tx ~ Poisson(mean_nb_tx_per_day). Per transaction: a time of day
int(Normal(43200, 20000)) seconds, the transaction DROPPED unless 0 < time < 86400 (the
handbook drops rather than redraws, so a customer-day averages ~3% fewer transactions than
its Poisson mean); an amount ~ Normal(mean_amount, std_amount), redrawn as
U(0, 2 * mean_amount) when negative, rounded to cents; a terminal uniform among the
customer's available ones (customers with none make no transactions).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from cardscore.simulator.profiles import Reach

SECONDS_PER_DAY = 86_400
TIME_OF_DAY_MEAN = SECONDS_PER_DAY / 2
TIME_OF_DAY_STD = 20_000.0
_MICROS = 1_000_000


def day_start_micros(start_date: date) -> int:
    """Microseconds since the epoch of midnight UTC of `start_date`."""
    moment = datetime(start_date.year, start_date.month, start_date.day, tzinfo=UTC)
    return int(moment.timestamp()) * _MICROS


def to_micros(times: pd.Series) -> np.ndarray:
    """int64 microseconds since the epoch of a tz-aware (or naive UTC) datetime Series."""
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.to_numpy().astype("datetime64[us]").astype(np.int64)


def from_micros(micros: np.ndarray) -> pd.Series:
    """A datetime64[us, UTC] Series from int64 microseconds since the epoch."""
    return pd.Series(np.asarray(micros, dtype=np.int64).astype("datetime64[us]")).dt.tz_localize(
        "UTC"
    )


def genuine_transactions(
    customers: pd.DataFrame,
    reach: Reach,
    n_days: int,
    start_date: date,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Transactions sorted by event time, transaction_id 0..N-1 in that order.

    Columns: transaction_id, event_time (datetime64[us, UTC]), customer_id, terminal_id,
    amount, tx_time_seconds (since start), tx_time_days (day index).
    """
    n_customers = len(customers)
    mean_nb = customers["mean_nb_tx_per_day"].to_numpy()
    mean_amount = customers["mean_amount"].to_numpy()
    std_amount = customers["std_amount"].to_numpy()
    n_available = reach.counts

    # One Poisson count per customer-day, customer-major like the handbook's nested loops.
    per_cell = rng.poisson(np.repeat(mean_nb, n_days))
    per_cell[np.repeat(n_available == 0, n_days)] = 0
    cell = np.repeat(np.arange(n_customers * n_days, dtype=np.int64), per_cell)
    customer = cell // n_days
    day = cell % n_days

    # int() truncates toward zero, as in the handbook; out-of-day times are dropped.
    time_of_day = np.trunc(rng.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, cell.size)).astype(
        np.int64
    )
    keep = (time_of_day > 0) & (time_of_day < SECONDS_PER_DAY)
    customer, day, time_of_day = customer[keep], day[keep], time_of_day[keep]

    amount = rng.normal(mean_amount[customer], std_amount[customer])
    negative = np.flatnonzero(amount < 0)
    amount[negative] = rng.uniform(0.0, 2.0 * mean_amount[customer[negative]])
    amount = np.round(amount, 2)

    pick = rng.integers(0, n_available[customer])  # every kept customer has >= 1 terminal
    terminal = reach.terminal_ids[reach.offsets[customer] + pick]

    seconds = day * SECONDS_PER_DAY + time_of_day
    # Stable: ties within the same second keep customer-major generation order.
    order = np.argsort(seconds, kind="stable")
    seconds, customer, terminal, amount, day = (
        seconds[order],
        customer[order],
        terminal[order],
        amount[order],
        day[order],
    )
    event_us = day_start_micros(start_date) + seconds * _MICROS
    return pd.DataFrame(
        {
            "transaction_id": np.arange(seconds.size, dtype=np.int64),
            "event_time": from_micros(event_us),
            "customer_id": customers["customer_id"].to_numpy()[customer],
            "terminal_id": terminal.astype(np.int64),
            "amount": amount,
            "tx_time_seconds": seconds,
            "tx_time_days": day,
        }
    )
