"""Small silver worlds for the feature tests (and the benchmark): simulator output or
hand-made rows, shaped by the silver contracts and written as real Delta tables."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from cardscore.core import catalog
from cardscore.schemas.contracts import SILVER_LABEL, SILVER_TRANSACTION

LOAD_ID = "test-load"
INGESTED_AT = datetime(2030, 1, 1, tzinfo=UTC)


def silver_transactions(tx: pd.DataFrame) -> pd.DataFrame:
    """transaction_id, event_time, customer_id, terminal_id, amount -> the silver contract."""
    out = pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"].astype("int64").to_numpy(),
            "event_time": pd.to_datetime(tx["event_time"], utc=True).dt.as_unit("us").to_numpy(),
            "customer_id": tx["customer_id"].astype("int64").to_numpy(),
            "terminal_id": tx["terminal_id"].astype("int64").to_numpy(),
            "amount": tx["amount"].astype("float64").to_numpy(),
        }
    )
    out["event_time"] = pd.to_datetime(out["event_time"], utc=True).dt.as_unit("us")
    return _lineage(out, "event_time", "tx_date", SILVER_TRANSACTION.field_names)


def silver_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """transaction_id, is_fraud, reported_time[, fraud_scenario] -> the silver label contract."""
    out = pd.DataFrame(
        {
            "transaction_id": labels["transaction_id"].astype("int64").to_numpy(),
            "is_fraud": labels["is_fraud"].astype(bool).to_numpy(),
            "reported_time": pd.to_datetime(labels["reported_time"], utc=True).dt.as_unit("us"),
            "fraud_scenario": (
                labels["fraud_scenario"].astype("int32").to_numpy()
                if "fraud_scenario" in labels
                else np.zeros(len(labels), dtype="int32")
            ),
        }
    )
    return _lineage(out, "reported_time", "reported_date", SILVER_LABEL.field_names)


def _lineage(frame: pd.DataFrame, time_column: str, date_column: str, order: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    frame["source_file"] = "test.jsonl"
    frame["load_id"] = LOAD_ID
    frame["ingested_at"] = pd.Timestamp(INGESTED_AT).as_unit("us")
    frame[date_column] = pd.to_datetime(frame[time_column], utc=True).dt.date
    return frame[order]


def write_silver(lake, transactions: pd.DataFrame, labels: pd.DataFrame) -> None:
    """Write both silver tables (contract schemas, partitioned like ingest does)."""
    spark = lake.spark
    tx = spark.createDataFrame(silver_transactions(transactions), SILVER_TRANSACTION.spark_schema())
    lake.overwrite(tx, catalog.SILVER_TRANSACTIONS, partition_by=SILVER_TRANSACTION.partition_by)
    lb = spark.createDataFrame(silver_labels(labels), SILVER_LABEL.spark_schema())
    lake.overwrite(lb, catalog.SILVER_LABELS, partition_by=SILVER_LABEL.partition_by)


def small_world(seed: int = 3, n_days: int = 50, late_labels: bool = True):
    """A simulator world of 60 customers and 120 terminals; labels up to 20 days late when
    `late_labels`, so the 7-day delay does not hide every label (point-in-time tests)."""
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.simulator import generate_world

    params = SimulatorSettings(
        n_customers=60,
        n_terminals=120,
        n_days=n_days,
        radius=15.0,
        seed=seed,
        compromised_terminals_per_day=1,
        compromised_customers_per_day=1,
        label_delay_max_days=20.0 if late_labels else 7.0,
    )
    return generate_world(params)


# Hand-made entities that transact once, so their presence in the snapshots has sharp edges.
SPARSE_CUSTOMER = 900_001
SPARSE_TERMINAL = 900_002
SPARSE_TX_TIME = pd.Timestamp("2018-04-02 12:00:00", tz="UTC")
SPARSE_AMOUNT = 10.0


def sparse_entities() -> tuple[pd.DataFrame, pd.DataFrame]:
    """One fraudulent transaction on 2018-04-02 by customer 900001 at terminal 900002.

    The customer has snapshot rows for 2018-04-03..2018-05-02 (30 days), the terminal for
    2018-04-10..2018-05-09 (days 8..37 after it); neither has a row on the day after that.
    """
    tx = pd.DataFrame(
        {
            "transaction_id": [900_000_001],
            "event_time": [SPARSE_TX_TIME],
            "customer_id": [SPARSE_CUSTOMER],
            "terminal_id": [SPARSE_TERMINAL],
            "amount": [SPARSE_AMOUNT],
        }
    )
    labels = pd.DataFrame(
        {
            "transaction_id": [900_000_001],
            "is_fraud": [True],
            "reported_time": [pd.Timestamp("2018-04-03 08:00:00", tz="UTC")],
        }
    )
    return tx, labels
