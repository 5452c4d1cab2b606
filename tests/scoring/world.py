"""The batch scorer's test world: silver and gold in Delta, the Feast repo, and a real model
trained on the training path's features and registered in a real MLflow registry."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import xgboost as xgb

from cardscore.core import registry
from cardscore.core.config import Settings
from cardscore.features.definitions import MODEL_FEATURES
from tests.features.worlds import small_world, write_silver

FIRST_DAY = date(2018, 4, 1)
N_DAYS = 16  # silver 2018-04-01 .. 2018-04-16
FIRST_SNAPSHOT = date(2018, 4, 9)  # terminals have rows from here on (their 7-day delay)
DAY = date(2018, 4, 15)  # the day most tests score
NEXT_DAY = date(2018, 4, 16)
TRAIN_DAYS = [date(2018, 4, 9) + timedelta(days=i) for i in range(5)]  # 04-09 .. 04-13

# Hand-made transactions on DAY and NEXT_DAY by entities that no snapshot knows.
NEW_CUSTOMER = 800_001
NEW_TERMINAL = 800_002
SILVER_COLUMNS = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]


def day_start(day: date) -> pd.Timestamp:
    return pd.Timestamp(day.isoformat(), tz="UTC")


def unknown_entity_transactions(simulated: pd.DataFrame) -> pd.DataFrame:
    """On DAY and NEXT_DAY: a new customer at a new terminal (both unknown), a new customer at
    a terminal of the first week (terminal known), a known customer at a new terminal at
    exactly midnight (customer known)."""
    times = simulated["event_time"]
    first_week = simulated[times < day_start(FIRST_DAY + timedelta(days=7))]
    rows = []
    for offset, day in enumerate((DAY, NEXT_DAY)):
        yesterday = simulated[(times >= day_start(day - timedelta(days=1))) & (times < day_start(day))]
        known_customer = int(yesterday["customer_id"].iloc[0])
        known_terminal = int(first_week["terminal_id"].iloc[0])
        base = 900_000_000 + offset * 10
        start = day_start(day)
        rows += [
            (base + 1, start + pd.Timedelta(hours=13, minutes=5), NEW_CUSTOMER, NEW_TERMINAL, 55.5),
            (base + 2, start + pd.Timedelta(hours=3), NEW_CUSTOMER + 2, known_terminal, 1234.0),
            (base + 3, start, known_customer, NEW_TERMINAL + 2, 0.0),
        ]
    frame = pd.DataFrame(rows, columns=SILVER_COLUMNS)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame


def build(spark, settings: Settings) -> pd.DataFrame:
    """Write silver, build gold for FIRST_SNAPSHOT..NEXT_DAY with the real job, apply Feast.
    Returns every silver transaction (silver column names), with `tx_fraud` labels."""
    from cardscore.core.lake import Lake
    from cardscore.core.stage import job_context
    from cardscore.features.store import apply
    from cardscore.jobs.build_features.stage import build_features_range

    simulated = small_world(seed=7, n_days=N_DAYS, late_labels=True)
    tx = simulated.transactions
    extra = unknown_entity_transactions(tx)
    extra["tx_fraud"] = 0
    transactions = pd.concat([tx[[*SILVER_COLUMNS, "tx_fraud"]], extra], ignore_index=True)
    lake = Lake(spark, settings)
    write_silver(lake, transactions[SILVER_COLUMNS], simulated.labels)
    build_features_range(job_context(settings, spark), FIRST_SNAPSHOT, NEXT_DAY)
    apply(settings)
    transactions["tx_date"] = transactions["event_time"].dt.date
    return transactions


def training_path_features(spark, settings: Settings, transactions: pd.DataFrame) -> pd.DataFrame:
    """Features exactly as training gets them: the training job's entity rows
    (`cardscore.model.datasets.entity_frame`) through `historical_features` (pandas)."""
    from cardscore.features.retrieval import historical_features
    from cardscore.model.datasets import entity_frame

    return historical_features(settings, spark, entity_frame(transactions))


def train_booster(spark, settings: Settings, transactions: pd.DataFrame) -> xgb.Booster:
    """A small real model on the training days' features (training path), with the labels."""
    days = transactions[transactions["tx_date"].isin(TRAIN_DAYS)]
    frame = training_path_features(spark, settings, days)
    labels = days.set_index("transaction_id").loc[frame["transaction_id"], "tx_fraud"].to_numpy()
    data = xgb.DMatrix(frame[list(MODEL_FEATURES)].to_numpy(np.float64), label=labels,
                       feature_names=list(MODEL_FEATURES))
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": 7, "nthread": 1}
    return xgb.train(params, data, num_boost_round=25)


def register(settings: Settings, booster: xgb.Booster, promote: bool = True) -> str:
    """Log the booster like training does (signature, pinned requirements), register it and,
    by default, make it the champion. Returns the version."""
    import mlflow
    import mlflow.xgboost

    from cardscore.model.tracking import ensure_experiment, model_signature, pip_requirements

    registry.configure_mlflow(settings)
    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.xgboost.log_model(
            booster, name="model", signature=model_signature(list(booster.feature_names or MODEL_FEATURES)),
            pip_requirements=pip_requirements(), model_format="json",
        )
    ref = registry.register_version(
        settings, info.model_uri, run.info.run_id,
        tags={registry.TAG_FEATURE_NAMES: json.dumps(list(booster.feature_names or MODEL_FEATURES)),
              registry.TAG_GATE: "passed"},
    )
    if promote:
        registry.promote(settings, actor="tests", reason="scoring test", version=ref.version)
    return ref.version


def predictions(lake, settings: Settings, day: date | None = None) -> pd.DataFrame:
    """The published predictions (of `day`), sorted by transaction id."""
    df = lake.read(settings.scoring.output_table)
    if day is not None:
        df = df.where(f"tx_date = DATE'{day.isoformat()}'")
    out = df.toPandas()
    return out.sort_values("transaction_id", kind="mergesort").reset_index(drop=True)


def silver_day(transactions: pd.DataFrame, day: date) -> pd.DataFrame:
    return transactions[transactions["tx_date"] == day].sort_values("transaction_id").reset_index(drop=True)


def other_booster(seed: int = 11) -> xgb.Booster:
    """A model over MODEL_FEATURES whose scores differ from the champion's."""
    rng = np.random.default_rng(seed)
    x = rng.random((300, len(MODEL_FEATURES))) * 100
    y = (x[:, 0] + rng.normal(scale=20, size=300) > 50).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(MODEL_FEATURES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 2, "seed": seed, "nthread": 1},
                     data, num_boost_round=5)


# The label of the made-up training data of `fresh_booster` depends on this fresh feature, so
# its scores move with it.
FRESH_DRIVER = "card_nb_tx_24h"


def fresh_booster() -> xgb.Booster:
    """A model of the snapshot_fresh_v1 set (snapshot and fresh features)."""
    from cardscore.features.feature_sets import SNAPSHOT_FRESH_V1

    names = list(SNAPSHOT_FRESH_V1.features)
    rng = np.random.default_rng(19)
    x = rng.random((600, len(names))) * 10
    y = (x[:, names.index(FRESH_DRIVER)] + rng.normal(scale=1, size=600) > 4).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=names)
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": 19, "nthread": 1},
                     data, num_boost_round=10)
