"""The benchmark's reference features (the handbook's per-transaction windows) against a
brute-force count, and independent of where the input history starts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.handbook_features import FEATURE_NAMES, handbook_features


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 3000
    start = pd.Timestamp("2018-06-01", tz="UTC")
    seconds = np.sort(rng.integers(0, 60 * 144, n)) * 600  # 10-minute slots: many equal times
    return pd.DataFrame({
        "transaction_id": np.arange(n),
        # microseconds, as everywhere in the project
        "event_time": (start + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us, UTC]"),
        "customer_id": rng.integers(0, 40, n),
        "terminal_id": rng.integers(0, 25, n),
        "amount": np.round(rng.gamma(2.0, 30.0, n), 2),
    }).sample(frac=1.0, random_state=1)  # input order must not matter


def brute_force(tx: pd.DataFrame, frauds: set[int], row: pd.Series) -> dict[str, float]:
    t = row["event_time"]
    out: dict[str, float] = {}
    mine = tx[tx["customer_id"] == row["customer_id"]]
    # a customer window ends at the transaction itself: equal times count up to it in id order
    mine = mine[(mine["event_time"] < t)
                | ((mine["event_time"] == t) & (mine["transaction_id"] <= row["transaction_id"]))]
    terminal = tx[tx["terminal_id"] == row["terminal_id"]]
    for w in (1, 7, 30):
        window = mine[(mine["event_time"] > t - pd.Timedelta(days=w)) & (mine["event_time"] <= t)]
        out[f"customer_id_nb_tx_{w}day_window"] = len(window)
        out[f"customer_id_avg_amount_{w}day_window"] = window["amount"].mean()
        delayed = terminal[(terminal["event_time"] > t - pd.Timedelta(days=7 + w))
                           & (terminal["event_time"] <= t - pd.Timedelta(days=7))]
        out[f"terminal_id_nb_tx_{w}day_window"] = len(delayed)
        out[f"terminal_id_risk_{w}day_window"] = delayed["transaction_id"].isin(frauds).mean() if len(delayed) else 0.0
    return out


def test_windows_match_a_brute_force_count(transactions: pd.DataFrame) -> None:
    frauds = set(transactions["transaction_id"].sample(150, random_state=2))
    features = handbook_features(transactions, frauds).set_index("transaction_id")
    assert list(features.columns) == list(FEATURE_NAMES)
    late = transactions[transactions["event_time"] >= pd.Timestamp("2018-07-10", tz="UTC")]
    for _, row in late.sample(400, random_state=3).iterrows():
        for name, expected in brute_force(transactions, frauds, row).items():
            assert features.at[row["transaction_id"], name] == pytest.approx(expected, abs=1e-9), name


def test_features_do_not_depend_on_where_the_history_starts(transactions: pd.DataFrame) -> None:
    frauds = set(transactions["transaction_id"].sample(150, random_state=2))
    cut = pd.Timestamp("2018-06-20", tz="UTC")  # 30 + 7 days before the rows compared
    full = handbook_features(transactions, frauds).set_index("transaction_id")
    short = handbook_features(transactions[transactions["event_time"] >= cut], frauds).set_index("transaction_id")
    rows = transactions.loc[transactions["event_time"] >= cut + pd.Timedelta(days=37), "transaction_id"]
    pd.testing.assert_frame_equal(full.loc[rows], short.loc[rows], rtol=1e-12, atol=1e-9)
