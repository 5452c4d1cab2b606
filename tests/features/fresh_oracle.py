"""A naive pandas oracle of the fresh features, written from features/README.md ("Fresh
features"), not from features/fresh*.py: its own table of names and windows, and for every
transaction a fresh boolean selection of the events strictly before its time.

Inputs use integer microseconds: transactions (transaction_id, customer_id, terminal_id,
amount, us) and label reports (transaction_id, is_fraud, reported_us).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

_MIN = 60 * 1_000_000
_H = 60 * _MIN
_D = 24 * _H

# The README's table, copied by hand: name -> (entity column, W, what).
README_TABLE: dict[str, tuple[str, int, str]] = {}
for _label, _w in (("10min", 10 * _MIN), ("1h", _H), ("24h", _D)):
    README_TABLE[f"card_nb_tx_{_label}"] = ("customer_id", _w, "count")
    README_TABLE[f"card_amount_sum_{_label}"] = ("customer_id", _w, "sum")
    README_TABLE[f"card_amount_mean_{_label}"] = ("customer_id", _w, "mean")
README_TABLE["card_seconds_since_previous_tx"] = ("customer_id", 30 * _D, "since_previous")
README_TABLE["card_nb_terminals_24h"] = ("customer_id", _D, "distinct_terminals")
README_TABLE["card_amount_over_mean_30d"] = ("customer_id", 30 * _D, "over_mean")
README_TABLE["card_nb_frauds_reported_30d"] = ("customer_id", 30 * _D, "frauds")
README_TABLE["terminal_nb_tx_1h"] = ("terminal_id", _H, "count")
README_TABLE["terminal_nb_tx_24h"] = ("terminal_id", _D, "count")
README_TABLE["terminal_nb_frauds_reported_7d"] = ("terminal_id", 7 * _D, "frauds")
README_TABLE["terminal_nb_frauds_reported_28d"] = ("terminal_id", 28 * _D, "frauds")
INTEGER_FEATURES = frozenset(n for n, (_, _, what) in README_TABLE.items() if what in {"count", "distinct_terminals", "frauds"})


def micro_units(amount: float) -> int:
    """README: round_half_up(amount * 1e6), the double product (amounts are >= 0 here)."""
    return math.floor(amount * 1e6 + 0.5)


def verdicts(transactions: pd.DataFrame, labels: pd.DataFrame) -> dict[int, dict[int, bool]]:
    """transaction id -> {report time: says fraud} of its valid reports (not before the
    transaction's own event time; earlier ones are invalid). Reports at one time are one
    verdict, fraud if any of them says fraud. Unknown ids count for nobody."""
    event = dict(zip(transactions["transaction_id"], transactions["us"], strict=True))
    out: dict[int, dict[int, bool]] = {}
    for tx_id, is_fraud, reported in labels[["transaction_id", "is_fraud", "reported_us"]].itertuples(index=False):
        if tx_id in event and reported >= event[tx_id]:
            by_time = out.setdefault(tx_id, {})
            by_time[reported] = by_time.get(reported, False) or bool(is_fraud)
    return out


def reported_fraud_at(by_time: dict[int, bool], t: int) -> bool:
    """README: a reported fraud at t when its latest valid report before t says fraud."""
    before = [r for r in by_time if r < t]
    return bool(before) and by_time[max(before)]


def oracle(transactions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """transaction_id plus every README feature, one row per transaction (input order)."""
    tx = transactions.reset_index(drop=True)
    us = tx["us"].to_numpy()
    micros = np.array([micro_units(a) for a in tx["amount"]], dtype=object)
    ids = tx["transaction_id"].to_numpy()
    verdicts_of = verdicts(tx, labels)
    rows = []
    for i in range(len(tx)):
        t = int(us[i])
        row: dict[str, object] = {"transaction_id": tx.at[i, "transaction_id"]}
        for name, (column, w, what) in README_TABLE.items():
            sel = (tx[column].to_numpy() == tx.at[i, column]) & (us >= t - w) & (us < t)
            n = int(sel.sum())
            total = int(sum(micros[sel]))
            mean = (float(total) / 1e6) / n if n else 0.0
            if what == "count":
                row[name] = n
            elif what == "sum":
                row[name] = float(total) / 1e6
            elif what == "mean":
                row[name] = mean
            elif what == "since_previous":
                row[name] = float(t - int(us[sel].max())) / 1e6 if n else -1.0
            elif what == "distinct_terminals":
                row[name] = len(set(tx["terminal_id"].to_numpy()[sel]))
            elif what == "over_mean":
                row[name] = float(tx.at[i, "amount"]) / mean if total > 0 else -1.0
            elif what == "frauds":
                row[name] = sum(1 for j in np.flatnonzero(sel) if reported_fraud_at(verdicts_of.get(ids[j], {}), t))
        rows.append(row)
    return pd.DataFrame(rows)
