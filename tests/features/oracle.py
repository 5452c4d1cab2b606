"""An independent pandas implementation of the feature definitions (features/README.md).

Written from the definitions, not from the Spark code: for each snapshot day D it selects the
transactions whose event_time falls in each window by comparing timestamps, and counts frauds
whose label was reported before D 00:00 UTC. Slow in principle (a loop over days), fast enough
on sorted arrays; the benchmark uses it as its baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import numpy as np
import pandas as pd

from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    DELAY_DAYS,
    TERMINAL_FEATURES,
    WINDOWS,
    customer_count,
    customer_mean,
    terminal_count,
    terminal_risk,
)

_DAY_US = 86_400 * 1_000_000


def _micros(series: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(series, utc=True)).as_unit("us").asi8


def _midnight_us(day: date) -> int:
    return (day - date(1970, 1, 1)).days * _DAY_US


def customer_oracle(transactions: pd.DataFrame, days: Iterable[date]) -> pd.DataFrame:
    """customer_id, the 6 customer features, snapshot_date: one row per active customer and day.

    `transactions`: event_time (UTC), customer_id, amount.
    """
    order = np.argsort(_micros(transactions["event_time"]), kind="stable")
    times = _micros(transactions["event_time"])[order]
    customers = transactions["customer_id"].to_numpy()[order]
    amounts = transactions["amount"].to_numpy(dtype=np.float64)[order]
    frames = []
    for day in days:
        end = _midnight_us(day)
        hi = np.searchsorted(times, end, side="left")  # strictly before D 00:00
        per_window = {}
        for w in WINDOWS:
            lo = np.searchsorted(times, end - w * _DAY_US, side="left")  # at or after D-w 00:00
            part = pd.DataFrame({"customer_id": customers[lo:hi], "amount": amounts[lo:hi]})
            per_window[w] = part.groupby("customer_id")["amount"].agg(["count", "sum"])
        active = per_window[max(WINDOWS)].index
        out = pd.DataFrame(index=active)
        for w in WINDOWS:
            stats = per_window[w].reindex(active)
            count = stats["count"].fillna(0).astype("int64")
            total = stats["sum"].fillna(0.0)
            out[customer_count(w)] = count
            out[customer_mean(w)] = np.where(count > 0, total / count.where(count > 0, 1), 0.0)
        out["snapshot_date"] = day
        frames.append(out.reset_index(names="customer_id"))
    return _concat(frames, ["customer_id", *CUSTOMER_FEATURES, "snapshot_date"])


def terminal_oracle(
    transactions: pd.DataFrame, labels: pd.DataFrame, days: Iterable[date]
) -> pd.DataFrame:
    """terminal_id, the 6 terminal features, snapshot_date: one row per active terminal and day.

    `transactions`: transaction_id, event_time, terminal_id; `labels`: transaction_id,
    is_fraud, reported_time.
    """
    tx_times_all = _micros(transactions["event_time"])
    order = np.argsort(tx_times_all, kind="stable")
    times = tx_times_all[order]
    terminals = transactions["terminal_id"].to_numpy()[order]
    ids = transactions["transaction_id"].to_numpy()[order]
    fraud = labels[labels["is_fraud"].astype(bool)]
    reported = pd.Series(_micros(fraud["reported_time"]), index=fraud["transaction_id"].to_numpy())
    frames = []
    for day in days:
        midnight = _midnight_us(day)
        window_end = midnight - DELAY_DAYS * _DAY_US  # D-7 00:00, excluded
        hi = np.searchsorted(times, window_end, side="left")
        per_window = {}
        for w in WINDOWS:
            lo = np.searchsorted(times, window_end - w * _DAY_US, side="left")
            part = pd.DataFrame(
                {"terminal_id": terminals[lo:hi], "transaction_id": ids[lo:hi], "time": times[lo:hi]}
            )
            rep = reported.reindex(part["transaction_id"].to_numpy()).to_numpy()
            tx_day_start = part["time"].to_numpy() // _DAY_US * _DAY_US
            # Known by D: reported strictly before D 00:00, and not before the transaction's day.
            part["fraud"] = (~np.isnan(rep)) & (rep < midnight) & (rep >= tx_day_start)
            per_window[w] = part.groupby("terminal_id")["fraud"].agg(["count", "sum"])
        active = per_window[max(WINDOWS)].index
        out = pd.DataFrame(index=active)
        for w in WINDOWS:
            stats = per_window[w].reindex(active)
            count = stats["count"].fillna(0).astype("int64")
            frauds = stats["sum"].fillna(0).astype("float64")
            out[terminal_count(w)] = count
            out[terminal_risk(w)] = np.where(count > 0, frauds / count.where(count > 0, 1), 0.0)
        out["snapshot_date"] = day
        frames.append(out.reset_index(names="terminal_id"))
    return _concat(frames, ["terminal_id", *TERMINAL_FEATURES, "snapshot_date"])


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]
