"""The Spark feature transformations against an independent pandas oracle, and their
point-in-time guarantees, on the embedded engine."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    TERMINAL_FEATURES,
    TX_DURING_NIGHT,
    TX_DURING_WEEKEND,
    customer_count,
    customer_mean,
    terminal_count,
    terminal_risk,
)
from cardscore.features.request_time import request_time_record
from cardscore.features.transform import (
    customer_snapshots,
    terminal_snapshots,
    with_request_time_features,
)
from cardscore.schemas.contracts import SILVER_LABEL, SILVER_TRANSACTION
from tests.features.oracle import customer_oracle, terminal_oracle
from tests.features.worlds import silver_labels, silver_transactions, small_world

TX_COLUMNS = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]
LABEL_COLUMNS = ["transaction_id", "is_fraud", "reported_time"]


def frames(spark, tx: pd.DataFrame, labels: pd.DataFrame):
    return (
        spark.createDataFrame(silver_transactions(tx), SILVER_TRANSACTION.spark_schema()),
        spark.createDataFrame(silver_labels(labels), SILVER_LABEL.spark_schema()),
    )


def snapshots(spark, tx: pd.DataFrame, labels: pd.DataFrame, first: date, last: date):
    tx_sdf, label_sdf = frames(spark, tx, labels)
    customers = customer_snapshots(tx_sdf, first, last).toPandas()
    terminals = terminal_snapshots(tx_sdf, label_sdf, first, last).toPandas()
    return customers, terminals


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def assert_same(spark_rows: pd.DataFrame, oracle_rows: pd.DataFrame, key: str, features) -> None:
    order = [key, "snapshot_date"]
    left = spark_rows.sort_values(order).reset_index(drop=True)
    right = oracle_rows.sort_values(order).reset_index(drop=True)
    assert len(left) == len(right)
    assert (left[key].to_numpy() == right[key].to_numpy()).all()
    assert (left["snapshot_date"].to_numpy() == right["snapshot_date"].to_numpy()).all()
    for name in features:
        if "_nb_tx_" in name:  # counts: exact
            np.testing.assert_array_equal(left[name].to_numpy(), right[name].to_numpy(), err_msg=name)
        else:  # means and ratios: 1e-9 relative
            np.testing.assert_allclose(left[name], right[name], rtol=1e-9, atol=0, err_msg=name)


@pytest.fixture(scope="module")
def world():
    return small_world(seed=3, n_days=60, late_labels=True)


def with_zero_amounts(tx: pd.DataFrame) -> pd.DataFrame:
    """5% of the amounts set to 0.0: windows holding only those must give exactly 0.0
    (range windows over doubles, which add and retract, drifted to -1e-13 on Sail)."""
    out = tx.copy()
    out.loc[np.random.default_rng(2).random(len(out)) < 0.05, "amount"] = 0.0
    return out


def test_spark_equals_the_pandas_oracle_on_every_day(spark, world) -> None:
    tx, labels = with_zero_amounts(world.transactions[TX_COLUMNS]), world.labels[LABEL_COLUMNS]
    first, last = date(2018, 4, 1), date(2018, 6, 5)  # from the first day to past the data's end
    customers, terminals = snapshots(spark, tx, labels, first, last)

    assert_same(customers, customer_oracle(tx, days(first, last)), "customer_id", CUSTOMER_FEATURES)
    assert_same(terminals, terminal_oracle(tx, labels, days(first, last)), "terminal_id", TERMINAL_FEATURES)
    # The world exercises what the definitions distinguish.
    assert customers["snapshot_date"].min() == date(2018, 4, 2)  # nothing is before the first day
    assert (terminals[terminal_risk(30)] > 0).any() and (terminals[terminal_risk(1)] == 0).any()
    assert (customers[customer_count(1)] == 0).any()
    only_zeros = (customers[customer_count(1)] > 0) & (customers[customer_mean(1)] == 0.0)
    assert only_zeros.sum() > 5  # days whose only amounts were 0.0: exactly 0, never below
    assert (customers[[customer_mean(w) for w in (1, 7, 30)]] >= 0).all().all()
    midnight = pd.Timestamp("2018-05-01", tz="UTC")
    stamps = pd.to_datetime(customers["event_timestamp"])
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps
    assert (stamps[customers["snapshot_date"] == date(2018, 5, 1)] == midnight).all()


def test_a_day_does_not_depend_on_what_comes_on_or_after_it(spark, world) -> None:
    tx, labels = world.transactions[TX_COLUMNS], world.labels[LABEL_COLUMNS]
    day = date(2018, 5, 12)
    midnight = pd.Timestamp(day, tz="UTC")
    full = snapshots(spark, tx, labels, day, day)
    # Only what was known before D: transactions before D, labels reported before D.
    known = snapshots(spark, tx[tx["event_time"] < midnight], labels[labels["reported_time"] < midnight], day, day)
    # The test means something only if late labels of old transactions exist.
    tx_time = tx.set_index("transaction_id")["event_time"]
    late = labels[(labels["reported_time"] >= midnight)
                  & (tx_time.reindex(labels["transaction_id"]).to_numpy() < midnight - pd.Timedelta(days=8))]
    assert len(late) > 0
    for before, after, key in ((known[0], full[0], "customer_id"), (known[1], full[1], "terminal_id")):
        pd.testing.assert_frame_equal(
            before.sort_values(key).reset_index(drop=True), after.sort_values(key).reset_index(drop=True)
        )


def test_labels_within_the_delay_never_count(spark, world) -> None:
    tx, labels = world.transactions[TX_COLUMNS], world.labels[LABEL_COLUMNS]
    day = date(2018, 5, 12)
    midnight = pd.Timestamp(day, tz="UTC")
    recent = tx[(tx["event_time"] >= midnight - pd.Timedelta(days=7)) & (tx["event_time"] < midnight)]
    # Every transaction of the last 7 days becomes a fraud reported before D.
    flooded = pd.concat(
        [labels[~labels["transaction_id"].isin(recent["transaction_id"])],
         pd.DataFrame({"transaction_id": recent["transaction_id"], "is_fraud": True,
                       "reported_time": recent["event_time"] + pd.Timedelta(minutes=1)})],
        ignore_index=True,
    )
    assert len(recent) > 100
    _, base = snapshots(spark, tx, labels, day, day)
    _, after = snapshots(spark, tx, flooded, day, day)
    pd.testing.assert_frame_equal(
        base.sort_values("terminal_id").reset_index(drop=True),
        after.sort_values("terminal_id").reset_index(drop=True),
    )


def test_a_label_counts_from_the_day_after_it_is_reported(spark) -> None:
    """Terminal 7: transactions on 04-01 (fraud) and 04-02 (genuine)."""
    tx = pd.DataFrame({
        "transaction_id": [1, 2, 3, 4],
        "event_time": pd.to_datetime(["2018-04-01 10:00", "2018-04-02 11:00", "2018-04-01 09:00",
                                      "2018-04-03 09:00"], utc=True),
        "customer_id": [1, 1, 2, 2],
        "terminal_id": [7, 7, 8, 8],
        "amount": [100.0, 50.0, 20.0, 30.0],
    })
    last_moment = pd.Timestamp("2018-04-14 23:59:59.999999", tz="UTC")
    labels = pd.DataFrame({
        "transaction_id": [1, 3, 4],
        "is_fraud": [True, True, True],
        # tx 1: known just before 04-15; tx 3: reported at 04-15 00:00 exactly, too late for 04-15;
        # tx 4: a label dated before its own transaction's day is ignored.
        "reported_time": [last_moment, pd.Timestamp("2018-04-15", tz="UTC"),
                          pd.Timestamp("2018-04-02 12:00", tz="UTC")],
    })
    _, terminals = snapshots(spark, tx, labels, date(2018, 4, 9), date(2018, 4, 16))
    t = terminals.set_index(["terminal_id", "snapshot_date"])
    # Terminal 7 appears 8 days after its first transaction and stays 37 days.
    assert t.loc[(7, date(2018, 4, 9)), terminal_count(1)] == 1  # window [04-01, 04-02)
    assert t.loc[(7, date(2018, 4, 10)), terminal_count(1)] == 1  # [04-02, 04-03): tx 2
    assert t.loc[(7, date(2018, 4, 10)), terminal_count(7)] == 2
    # The fraud label of 04-14 23:59:59.999999 is known on 04-15, not before.
    assert t.loc[(7, date(2018, 4, 14)), terminal_risk(7)] == 0.0
    assert t.loc[(7, date(2018, 4, 15)), terminal_risk(7)] == 0.5
    assert t.loc[(7, date(2018, 4, 15)), terminal_risk(30)] == 0.5
    # Reported at 04-15 00:00:00: not known by 04-15, known by 04-16.
    assert t.loc[(8, date(2018, 4, 15)), terminal_risk(30)] == 0.0
    assert t.loc[(8, date(2018, 4, 16)), terminal_risk(30)] == 0.5
    # Terminal 8 becomes active on 04-09 (day 8 after 04-01) and its 04-03 transaction enters on 04-11.
    assert t.loc[(8, date(2018, 4, 9)), terminal_count(30)] == 1
    assert t.loc[(8, date(2018, 4, 11)), terminal_count(30)] == 2
    assert (7, date(2018, 4, 8)) not in t.index


def test_customer_windows_and_active_set(spark) -> None:
    tx = pd.DataFrame({
        "transaction_id": [1, 2, 3, 4],
        "event_time": pd.to_datetime(["2018-04-01 00:00:00", "2018-04-20 23:59:59",
                                      "2018-04-30 23:59:59.999999", "2018-05-01 00:00:00"], utc=True, format="ISO8601"),
        "customer_id": [1, 1, 1, 1],
        "terminal_id": [5, 5, 5, 5],
        "amount": [10.0, 20.0, 60.0, 1000.0],
    })
    empty = pd.DataFrame({"transaction_id": pd.Series(dtype="int64"), "is_fraud": pd.Series(dtype=bool),
                          "reported_time": pd.Series(dtype="datetime64[us, UTC]")})
    customers, _ = snapshots(spark, tx, empty, date(2018, 4, 1), date(2018, 6, 1))
    c = customers.set_index("snapshot_date")
    assert date(2018, 4, 1) not in c.index  # nothing before the first transaction
    # 05-01 sees [04-01, 05-01): all but the 05-01 transaction.
    assert c.loc[date(2018, 5, 1), customer_count(30)] == 3
    assert c.loc[date(2018, 5, 1), customer_mean(30)] == pytest.approx(30.0)
    assert c.loc[date(2018, 5, 1), customer_count(1)] == 1
    assert c.loc[date(2018, 5, 1), customer_mean(1)] == 60.0
    assert c.loc[date(2018, 5, 1), customer_count(7)] == 1
    # 05-02: the 04-01 transaction has left the 30-day window, the 05-01 one is in.
    assert c.loc[date(2018, 5, 2), customer_count(30)] == 3
    assert c.loc[date(2018, 5, 2), customer_mean(30)] == pytest.approx(1080.0 / 3)
    # 05-31 is the last day with the 05-01 transaction in [D-30, D); 06-01 has no row.
    assert c.loc[date(2018, 5, 31), customer_count(30)] == 1
    assert c.loc[date(2018, 5, 31), customer_mean(1)] == 0.0  # no transaction: 0, not NaN
    assert date(2018, 6, 1) not in c.index
    assert len(customers) == 60  # 04-02 .. 05-31


def test_request_time_features_in_the_engine(spark, world) -> None:
    tx = world.transactions[TX_COLUMNS].head(3000).rename(columns={"amount": "tx_amount"})
    tx = pd.concat([tx, pd.DataFrame({"transaction_id": [-1], "customer_id": [0], "terminal_id": [0],
                                      "tx_amount": [1.0],
                                      "event_time": [pd.Timestamp("2018-04-07 06:59:59.999999", tz="UTC")]})])
    sdf = spark.createDataFrame(tx.assign(event_time=tx["event_time"].dt.as_unit("us")))
    out = with_request_time_features(sdf, "tx_amount", "event_time").toPandas()
    assert list(out.columns) == [*tx.columns, TX_DURING_WEEKEND, TX_DURING_NIGHT]
    expected = {
        int(r.transaction_id): request_time_record(r.tx_amount, r.event_time.to_pydatetime())
        for r in tx.itertuples()
    }
    for row in out.itertuples():
        want = expected[int(row.transaction_id)]
        assert (row.tx_during_weekend, row.tx_during_night) == (want[TX_DURING_WEEKEND], want[TX_DURING_NIGHT])
    assert out["tx_during_night"].sum() > 0 and out["tx_during_weekend"].sum() > 0
