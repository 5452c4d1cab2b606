"""Training/serving skew: a simulated day replayed through the stream scorer and the same
day read through the training path give the same score for every transaction.

The training side is Feast point-in-time retrieval (`features.retrieval.historical_features`
on the Spark offline store over the gold Delta tables, what `jobs/train/main.py` builds its sets
with) and the same champion booster. Stream against the nightly batch scorer is
tests/scoring/test_stream_skew.py: together they tie all three paths to one definition."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from cardscore.core import registry
from cardscore.core.config import load_settings
from cardscore.core.lake import Lake
from cardscore.core.stage import job_context
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.features.retrieval import historical_features
from cardscore.features.store import materialize
from cardscore.jobs.build_features.stage import build_features_range
from cardscore.services.broker import create_topics, project_topics
from cardscore.simulator import read_landing_day, write_landing
from cardscore.simulator.kafka import replay_day
from tests.features.worlds import small_world, write_silver
from tests.streaming import world
from tests.streaming.conftest import STREAMING_TEST_SETTINGS

DAY = date(2018, 5, 8)  # the snapshot of D reads [D-37, D): the world starts 2018-04-01


def test_stream_scores_equal_offline_scores_for_a_replayed_day(spark, broker, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(overrides={
        "home": str(tmp_path / "home"),
        "kafka": {"mode": "external", "client": {"bootstrap.servers": broker.bootstrap},
                  "consumer": world.TEST_CONSUMER, "partitions": 2,
                  "topics": {"transactions": f"tx-{suffix}", "scores": f"scores-{suffix}", "dlq": f"dlq-{suffix}",
                             "labels": f"labels-{suffix}"}},
        "streaming": {**STREAMING_TEST_SETTINGS, "group_id": f"skew-{suffix}"},
    })
    registry.clear_caches()
    simulated = small_world(seed=9, n_days=40, late_labels=True)
    write_landing(simulated, settings.landing_root)
    lake = Lake(spark, settings)
    columns = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]
    write_silver(lake, simulated.transactions[columns], simulated.labels[["transaction_id", "is_fraud", "reported_time"]])
    build_features_range(job_context(settings, spark), DAY, DAY)
    materialize(settings, spark, DAY)
    version = world.register(settings, world.booster(seed=3))

    create_topics(settings.kafka_conf(), project_topics(settings))
    expected = len(read_landing_day(settings.landing_root, DAY))
    assert replay_day(settings, DAY).transactions == expected  # the `cardscore replay` path
    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.totals.get("messages", 0) >= expected, 120, "the replayed day")
        assert running.totals["scored"] == expected
    streamed = {tx: v[0] for tx, v in world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores)).items()}

    day_tx = simulated.transactions[simulated.transactions["event_time"].dt.date == DAY]
    entities = pd.DataFrame({
        "transaction_id": day_tx["transaction_id"].to_numpy(),
        "customer_id": day_tx["customer_id"].to_numpy(),
        "terminal_id": day_tx["terminal_id"].to_numpy(),
        "event_timestamp": pd.to_datetime(day_tx["event_time"], utc=True).dt.as_unit("us").to_numpy(),
        "tx_amount": day_tx["amount"].to_numpy(),
    })
    entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
    offline = historical_features(settings, spark, entities)
    booster = registry.load_booster(settings, registry.resolve_alias(settings))
    offline_scores = booster.inplace_predict(offline[list(MODEL_FEATURES)].to_numpy(dtype=np.float64))

    assert sorted(streamed) == sorted(entities["transaction_id"].tolist())  # every transaction scored
    stream_scores = np.array([streamed[tx]["score"] for tx in entities["transaction_id"]])
    assert np.max(np.abs(stream_scores - offline_scores)) < 1e-6
    assert {s["model_version"] for s in streamed.values()} == {version}
    assert {s["feature_snapshot_date"] for s in streamed.values()} <= {DAY.isoformat(), None}
    # the flags say exactly when the offline side found no gold row either (all-zero features)
    customer_zero = offline[[c for c in MODEL_FEATURES if c.startswith("customer_id_nb_tx_30")]].sum(axis=1) == 0
    flags = np.array([streamed[tx]["unknown_customer"] for tx in entities["transaction_id"]])
    assert (flags == customer_zero.to_numpy()).all()
    print(f"skew check: {len(entities)} transactions, max |diff| {np.max(np.abs(stream_scores - offline_scores)):.2e}")
