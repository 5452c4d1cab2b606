"""The handbook's own feature windows (chapter 3.3), per transaction, in pandas.

Benchmark-only reference: the project's single feature definition lives in `features/`
(daily snapshots served by Feast). This module reproduces the handbook's definitions so the
quality benchmark can measure what the difference costs or gains, on the same split:

* customer windows end at the transaction itself and include it (pandas time-based rolling
  windows over the customer's transactions: count and mean amount over 1, 7, 30 days);
* terminal windows are [t - delay - w, t - delay): transaction count and fraud ratio, using
  every fraud label (the handbook's assumption that labels are known after the delay);
* weekend: Saturday or Sunday; night: hour <= 6 (UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

WINDOWS = (1, 7, 30)
DELAY_DAYS = 7
# The handbook's `input_features`, lower-case: the same names and order as MODEL_FEATURES.
FEATURE_NAMES = (
    "tx_amount", "tx_during_weekend", "tx_during_night",
    *(f"customer_id_{kind}_{w}day_window" for w in WINDOWS for kind in ("nb_tx", "avg_amount")),
    *(f"terminal_id_{kind}_{w}day_window" for w in WINDOWS for kind in ("nb_tx", "risk")),
)


_GROUP_STRIDE_US = 10**14  # > any span of event times in microseconds (~3 years)


def _rolling(frame: pd.DataFrame, key: str, column: str, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-key sum and count of `column` over the time window (t - days, t] ending at each row
    (the row itself and the key's earlier rows, as pandas' time-based rolling on each key's
    transactions in time order), aligned with `frame`'s rows.

    Cumulative sums over rows sorted by (key, time): a window is a contiguous slice, found by
    binary search on a (key, time) composite. (groupby().rolling(on=...) indexes its result by
    (key, time), not by row: re-sorting it by time swapped rows of different keys at equal
    times, a few percent of them, so results depended on where the input window started.)
    """
    codes = pd.factorize(frame[key])[0].astype(np.int64)
    micros = frame["_time"].to_numpy("datetime64[us]").astype(np.int64)
    micros = micros - micros.min()
    if micros.max() >= _GROUP_STRIDE_US:
        raise ValueError("event times span too long for the (key, time) composite")
    order = np.lexsort((np.arange(len(frame)), micros, codes))  # stable: frame order breaks ties
    composite = codes[order] * _GROUP_STRIDE_US + micros[order]
    values = frame[column].to_numpy(np.float64)[order]
    hi = np.arange(1, len(frame) + 1)
    lo = np.searchsorted(composite, composite - days * 86_400_000_000, side="right")
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    total_sorted = cumulative[hi] - cumulative[lo]
    count_sorted = (hi - lo).astype(np.float64)
    total, count = np.empty(len(frame)), np.empty(len(frame))
    total[order], count[order] = total_sorted, count_sorted
    return total, count


def handbook_features(
    transactions: pd.DataFrame,
    fraud_transaction_ids: Iterable[int],
    windows: Sequence[int] = WINDOWS,
    delay_days: int = DELAY_DAYS,
) -> pd.DataFrame:
    """transaction_id and the 15 handbook features, named as `features.definitions` names them.

    `transactions` needs transaction_id, event_time (tz-aware UTC), customer_id, terminal_id
    and amount, and enough history before the first day of interest (30 + delay days).
    """
    frame = transactions[["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]].copy()
    frame["tx_fraud"] = frame["transaction_id"].isin(set(fraud_transaction_ids)).astype(np.float64)
    frame = frame.sort_values(["event_time", "transaction_id"], kind="mergesort").reset_index(drop=True)
    frame["_time"] = frame["event_time"].dt.tz_convert("UTC").dt.tz_localize(None)

    out = pd.DataFrame({"transaction_id": frame["transaction_id"].to_numpy()})
    out["tx_amount"] = frame["amount"].to_numpy()
    out["tx_during_weekend"] = (frame["_time"].dt.weekday >= 5).astype(np.float64).to_numpy()
    out["tx_during_night"] = (frame["_time"].dt.hour <= 6).astype(np.float64).to_numpy()
    for w in windows:
        total, count = _rolling(frame, "customer_id", "amount", w)
        out[f"customer_id_nb_tx_{w}day_window"] = count
        out[f"customer_id_avg_amount_{w}day_window"] = total / count
    frauds_delay, count_delay = _rolling(frame, "terminal_id", "tx_fraud", delay_days)
    for w in windows:
        frauds_all, count_all = _rolling(frame, "terminal_id", "tx_fraud", delay_days + w)
        count = count_all - count_delay
        with np.errstate(invalid="ignore", divide="ignore"):
            risk = np.where(count > 0, (frauds_all - frauds_delay) / np.where(count > 0, count, 1), 0.0)
        out[f"terminal_id_nb_tx_{w}day_window"] = count
        out[f"terminal_id_risk_{w}day_window"] = risk
    return out
