"""The features job's algorithm in one process with numpy: the honest single-machine baseline.

`features.transform` computes every snapshot of a range of days in one linear pass: per entity
and day totals, a dense calendar of running totals, and each window's total as the difference
of two lagged running totals (frauds, which are few, expanded to the days they count for).
This module is the same algorithm on numpy arrays, in one process, with no engine:

* entity x day matrices of counts (and of amounts in exact integer micro-units, which is what
  the engine's DECIMAL(38, 6) sums are), their running totals along the days;
* the window [D-delay-w, D-delay-1] of snapshot day D is `P[:, D-delay] - P[:, D-delay-w]`;
* a fraud of day t reported on day r counts for window w on the days
  [max(t+delay+1, r+1), t+delay+w]: +1/-1 in a difference array, then a running sum.

It is the baseline of `python -m bench features` next to the naive per-day oracle of the tests
(`tests/features/oracle.py`, which re-selects every window of every day): the oracle shows what
the algorithm buys, this one what the engine costs or saves against the same algorithm.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    DELAY_DAYS,
    MAX_WINDOW,
    TERMINAL_FEATURES,
    WINDOWS,
    customer_count,
    customer_mean,
    day_number,
    terminal_count,
    terminal_risk,
)

_DAY_US = 86_400 * 1_000_000


def _day_numbers(times: pd.Series) -> np.ndarray:
    micros = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("us").asi8
    return micros // _DAY_US


def _prefix(values: np.ndarray) -> np.ndarray:
    """P[:, k] = sum of columns < k (a zero column first)."""
    out = np.zeros((values.shape[0], values.shape[1] + 1), dtype=values.dtype)
    np.cumsum(values, axis=1, out=out[:, 1:])
    return out


def _matrix(entity: np.ndarray, column: np.ndarray, n_entities: int, n_days: int, weights=None) -> np.ndarray:
    flat = np.bincount(entity * n_days + column, weights=weights, minlength=n_entities * n_days)
    return flat.reshape(n_entities, n_days)


def _rows(keys: np.ndarray, key_name: str, snapshot_days: np.ndarray, active: np.ndarray,
          columns: dict[str, np.ndarray], names: tuple[str, ...]) -> pd.DataFrame:
    """One row per active (entity, snapshot day); `columns` are entity x snapshot-day arrays."""
    entity_index, day_index = np.nonzero(active)
    frame = pd.DataFrame({key_name: keys[entity_index]})
    for name in names:
        frame[name] = columns[name][entity_index, day_index]
    frame["snapshot_date"] = snapshot_days[day_index].astype("datetime64[D]")
    return frame


def customer_snapshots(transactions: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    """customer_id, the customer features, snapshot_date for every day in [first, last]."""
    d_first, d_last = day_number(first), day_number(last)
    lo = d_first - MAX_WINDOW
    days = _day_numbers(transactions["event_time"])
    keep = (days >= lo) & (days <= d_last - 1)
    keys, entity = np.unique(transactions["customer_id"].to_numpy()[keep], return_inverse=True)
    column = days[keep] - lo
    n_days = d_last - lo  # columns lo .. d_last - 1
    # Amounts as exact integer micro-units: the engine sums DECIMAL(38, 6) values.
    micro_units = np.rint(transactions["amount"].to_numpy(dtype=np.float64)[keep] * 1e6).astype(np.int64)
    counts = _prefix(_matrix(entity, column, len(keys), n_days).astype(np.int64))
    totals = _prefix(_matrix(entity, column, len(keys), n_days, micro_units.astype(np.float64)).astype(np.int64))
    snapshot = np.arange(d_first, d_last + 1)
    end = snapshot - lo  # P[:, end] sums the days before D
    columns = {}
    for w in WINDOWS:
        count = counts[:, end] - counts[:, end - w]
        total = (totals[:, end] - totals[:, end - w]) / 1e6
        columns[customer_count(w)] = count
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[customer_mean(w)] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    active = columns[customer_count(MAX_WINDOW)] > 0
    return _rows(keys, "customer_id", snapshot, active, columns, CUSTOMER_FEATURES)


def terminal_snapshots(transactions: pd.DataFrame, labels: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    """terminal_id, the terminal features, snapshot_date for every day in [first, last].

    `labels`: transaction_id, is_fraud, reported_time; the latest report of a transaction wins.
    """
    d_first, d_last = day_number(first), day_number(last)
    lo = d_first - DELAY_DAYS - MAX_WINDOW
    hi = d_last - DELAY_DAYS - 1
    days = _day_numbers(transactions["event_time"])
    keep = (days >= lo) & (days <= hi)
    keys, entity = np.unique(transactions["terminal_id"].to_numpy()[keep], return_inverse=True)
    n_days = hi - lo + 1
    counts = _prefix(_matrix(entity, days[keep] - lo, len(keys), n_days).astype(np.int64))
    snapshot = np.arange(d_first, d_last + 1)
    end = snapshot - DELAY_DAYS - lo  # P[:, end] sums the days before D - delay

    # Known frauds: the latest report per transaction, fraud, not dated before its transaction.
    latest = labels.sort_values("reported_time", kind="mergesort").drop_duplicates("transaction_id", keep="last")
    latest = latest[latest["is_fraud"].astype(bool)]
    kept_ids = pd.Series(np.arange(int(keep.sum())), index=transactions["transaction_id"].to_numpy()[keep])
    position = kept_ids.reindex(latest["transaction_id"].to_numpy()).to_numpy()
    found = ~np.isnan(position)
    position = position[found].astype(np.int64)
    reported_day = _day_numbers(latest["reported_time"])[found]
    fraud_entity, fraud_day = entity[position], days[keep][position]
    valid = reported_day >= fraud_day
    fraud_entity, fraud_day, reported_day = fraud_entity[valid], fraud_day[valid], reported_day[valid]

    columns = {}
    n_snapshots = len(snapshot)
    for w in WINDOWS:
        count = counts[:, end] - counts[:, end - w]
        start = np.maximum(fraud_day + DELAY_DAYS + 1, reported_day + 1) - d_first
        stop = fraud_day + DELAY_DAYS + w - d_first  # inclusive
        start, stop = np.clip(start, 0, n_snapshots), np.clip(stop + 1, 0, n_snapshots)
        span = start < stop
        delta = np.zeros((len(keys), n_snapshots + 1), dtype=np.int64)
        np.add.at(delta, (fraud_entity[span], start[span]), 1)
        np.add.at(delta, (fraud_entity[span], stop[span]), -1)
        frauds = np.cumsum(delta, axis=1)[:, :n_snapshots]
        columns[terminal_count(w)] = count
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[terminal_risk(w)] = np.where(count > 0, frauds / np.maximum(count, 1), 0.0)
    active = columns[terminal_count(MAX_WINDOW)] > 0
    return _rows(keys, "terminal_id", snapshot, active, columns, TERMINAL_FEATURES)


def snapshots_to_parquet(transactions: pd.DataFrame, labels: pd.DataFrame, first: date, last: date,
                         folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both snapshot tables of [first, last], written as Parquet like the engine's run."""
    customers = customer_snapshots(transactions, first, last)
    terminals = terminal_snapshots(transactions, labels, first, last)
    folder.mkdir(parents=True, exist_ok=True)
    customers.to_parquet(folder / "customers.parquet", index=False)
    terminals.to_parquet(folder / "terminals.parquet", index=False)
    return customers, terminals
