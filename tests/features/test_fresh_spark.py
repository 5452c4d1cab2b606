"""The offline fresh-feature transform (Spark, on the embedded Sail engine) against the README
oracle and the online state, exactly: counts are integers, sums integer micro-units turned into
doubles by the same two IEEE operations, so no tolerance is needed or allowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from cardscore.features.fresh import FRESH_FEATURE_NAMES, FRESH_FEATURES
from cardscore.features.fresh_spark import fresh_features
from cardscore.features.fresh_state import FreshState
from tests.features.fresh_histories import random_history
from tests.features.fresh_oracle import oracle
from tests.support.classic import run_on_classic

# Several histories in one Spark run: disjoint cards, terminals and ids (key offsets).
SEEDS = range(8)
TX_COLUMNS = ["transaction_id", "customer_id", "terminal_id", "amount", "event_time"]


@pytest.fixture(scope="module")
def histories() -> list:
    return [random_history(seed, n_tx=200, key_offset=(seed + 1) * 1_000_000) for seed in SEEDS]


def _frames(spark, histories: list):
    tx = pd.concat([h.transactions for h in histories], ignore_index=True)
    labels = pd.concat([h.labels for h in histories], ignore_index=True)
    tx_rows = [
        (int(r.transaction_id), int(r.customer_id), int(r.terminal_id), float(r.amount), int(r.us))
        for r in tx.itertuples(index=False)
    ]
    label_rows = [(int(r.transaction_id), bool(r.is_fraud), int(r.reported_us)) for r in labels.itertuples(index=False)]
    tx_df = spark.createDataFrame(
        tx_rows, "transaction_id long, customer_id long, terminal_id long, amount double, us long"
    ).select("transaction_id", "customer_id", "terminal_id", "amount", F.timestamp_micros("us").alias("event_time"))
    label_df = spark.createDataFrame(label_rows, "transaction_id long, is_fraud boolean, reported_us long").select(
        "transaction_id", "is_fraud", F.timestamp_micros("reported_us").alias("reported_time")
    )
    return tx_df, label_df


def test_spark_transform_equals_the_oracle_and_the_online_state(spark, histories: list) -> None:
    tx_df, label_df = _frames(spark, histories)
    result = fresh_features(tx_df, label_df)
    assert result.columns == [*TX_COLUMNS, *FRESH_FEATURE_NAMES]
    types = dict(result.dtypes)
    for f in FRESH_FEATURES:
        assert types[f.name] == ("bigint" if f.dtype == "int64" else "double"), f.name
    got = result.toPandas().set_index("transaction_id")
    assert len(got) == sum(len(h.transactions) for h in histories)
    assert not got[list(FRESH_FEATURE_NAMES)].isna().any().any()
    for h in histories:
        expected = oracle(h.transactions, h.labels).set_index("transaction_id")
        state = FreshState(allowed_lateness_us=10**15)
        for r in h.transactions.itertuples(index=False):
            state.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, r.us, r.amount)
        for r in h.labels.itertuples(index=False):
            state.add_label(r.transaction_id, bool(r.is_fraud), r.reported_us)
        online = pd.DataFrame(
            [state.features_at(r.customer_id, r.terminal_id, r.us, r.amount) for r in h.transactions.itertuples(index=False)],
            index=h.transactions["transaction_id"],
        )
        served = got.loc[expected.index]
        for name in FRESH_FEATURE_NAMES:
            offline = served[name].to_numpy()
            diff = np.flatnonzero(offline != expected[name].to_numpy())
            assert diff.size == 0, (
                f"seed {h.seed}, {name}: {diff.size} rows differ, first transaction {expected.index[diff[0]]}: "
                f"spark {offline[diff[0]]!r}, oracle {expected[name].to_numpy()[diff[0]]!r}"
            )
            assert np.array_equal(offline, online.loc[expected.index, name].to_numpy()), f"seed {h.seed}, {name}"
    # The histories exercise what the semantics are about (else the equality would prove little).
    assert (got["card_nb_frauds_reported_30d"] > 0).any() and (got["terminal_nb_frauds_reported_28d"] > 0).any()
    assert (got["card_seconds_since_previous_tx"] == -1.0).any() and (got["card_nb_terminals_24h"] > 1).any()


def test_the_transform_keeps_the_input_columns_and_rows(spark) -> None:
    """A single transaction: every feature is the empty-window value; extra columns survive."""
    tx_df = spark.createDataFrame(
        [(1, 2, 3, 4.5, 1_525_132_800_000_000, "x")],
        "transaction_id long, customer_id long, terminal_id long, amount double, us long, extra string",
    ).select(*TX_COLUMNS[:4], F.timestamp_micros("us").alias("event_time"), "extra")
    labels = spark.createDataFrame([(1, True, 1_525_132_800_000_000)], "transaction_id long, is_fraud boolean, r long").select(
        "transaction_id", "is_fraud", F.timestamp_micros("r").alias("reported_time")
    )
    rows = fresh_features(tx_df, labels).collect()
    assert len(rows) == 1
    row = rows[0].asDict()
    assert row["extra"] == "x" and row["card_nb_tx_24h"] == 0 and row["card_amount_over_mean_30d"] == -1.0
    assert row["card_nb_frauds_reported_30d"] == 0  # its own fraud, reported at its own time: not before t


@pytest.mark.classic
def test_classic_spark_gives_the_oracle_values_too(histories: list, tmp_path: Path) -> None:
    """The same transform on classic local Spark (JVM, no Spark Connect): the API it uses is the
    common one, and its values are the oracle's, exactly."""
    tx = pd.concat([h.transactions for h in histories[:4]], ignore_index=True)
    labels = pd.concat([h.labels for h in histories[:4]], ignore_index=True)
    inputs = {"transactions": tmp_path / "tx.parquet", "labels": tmp_path / "labels.parquet"}
    tx.assign(event_time=pd.to_datetime(tx["us"], unit="us", utc=True)).drop(columns="us").to_parquet(
        inputs["transactions"], coerce_timestamps="us", index=False
    )
    labels.assign(reported_time=pd.to_datetime(labels["reported_us"], unit="us", utc=True)).drop(
        columns="reported_us"
    ).to_parquet(inputs["labels"], coerce_timestamps="us", index=False)
    classic = run_on_classic("tests.features.parity:fresh", inputs, tmp_path / "classic.parquet").set_index(
        "transaction_id"
    )
    for h in histories[:4]:
        expected = oracle(h.transactions, h.labels).set_index("transaction_id")
        got = classic.loc[expected.index]
        for name in FRESH_FEATURE_NAMES:
            assert np.array_equal(got[name].to_numpy(), expected[name].to_numpy()), f"seed {h.seed}, {name}"
