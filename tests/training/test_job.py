"""`jobs/train/main.py` end to end on a tiny world: silver -> gold features (the real job) ->
point-in-time sets through Feast -> XGBoost -> MLflow run, registry and gate."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from cardscore.core import catalog, registry
from cardscore.core.config import load_settings
from cardscore.core.lake import Lake
from cardscore.core.stage import job_context
from cardscore.jobs.train.stage import TrainingParams, train
from tests.features.worlds import write_silver

REPO = Path(__file__).resolve().parents[2]
# Days 2018-04-01..04-21; train 04-10..04-13, delay 04-14..04-16, test 04-17..04-20.
PROTOCOL = {"train_start": "2018-04-10", "train_days": 4, "delay_days": 3, "test_days": 4, "top_k": 10}
GATE = {"min_auc_roc": 0.6, "min_average_precision": 0.05, "min_card_precision_at_k": 0.02}


def tiny_world():
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.simulator import generate_world

    return generate_world(SimulatorSettings(
        n_customers=150, n_terminals=300, n_days=21, radius=10.0, seed=11,
        compromised_terminals_per_day=1, compromised_customers_per_day=2,
    ))


@pytest.fixture(scope="module")
def trained_world(spark, tmp_path_factory: pytest.TempPathFactory):
    from cardscore.jobs.build_features.stage import build_features_range

    home = tmp_path_factory.mktemp("train-job")
    settings = load_settings(overrides={"home": str(home), "training": {"protocol": PROTOCOL, "gate": GATE}})
    lake = Lake(spark, settings)
    world = tiny_world()
    write_silver(lake, world.transactions, world.labels)
    ctx = job_context(settings, spark)
    build_features_range(ctx, date(2018, 4, 10), date(2018, 4, 20))
    report = train(ctx, TrainingParams(actor="tester", reason="end-to-end test"))
    return ctx, world, report


def test_train_job_end_to_end(trained_world) -> None:
    ctx, world, report = trained_world
    settings = ctx.settings
    assert report.version == "1" and report.challenger and report.gate.passed
    assert report.protocol["test_start"] == "2018-04-17" and report.protocol["test_end"] == "2018-04-20"
    from cardscore.features.definitions import FEATURE_SERVICE_NAME, MODEL_FEATURES

    assert report.feature_names == list(MODEL_FEATURES)
    assert "fraud_scenario" not in report.feature_names
    n_train = int(((world.transactions["event_time"] >= "2018-04-10") & (world.transactions["event_time"] < "2018-04-14")).sum())
    assert report.sizes["train_transactions"] == n_train
    assert report.sizes["test_transactions"] > 0 and report.test.frauds > 0
    assert report.test.auc_roc > 0.6

    ref = registry.resolve_alias(settings, "challenger")
    assert ref.version == "1" and ref.feature_service == FEATURE_SERVICE_NAME
    run = registry.client(settings).get_run(report.run_id)
    versions = {catalog.SILVER_TRANSACTIONS: 0, catalog.SILVER_LABELS: 0}
    assert report.data_versions == versions
    assert run.data.params[f"data.{catalog.SILVER_TRANSACTIONS}.version"] == "0"
    assert run.data.params["protocol.train_start"] == "2018-04-10"
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {
        f"{catalog.SILVER_TRANSACTIONS}@v0", f"{catalog.SILVER_LABELS}@v0"}
    assert run.data.metrics["test_average_precision"] == pytest.approx(report.test.average_precision)
    # The world's label feed reaches 7 days past the last test day: every test label is in.
    lineage = mlflow_dict(settings, report.run_id, "lineage.json")
    assert lineage["test_labels_complete"] is True and lineage["last_label_reported"] >= "2018-04-27"


def mlflow_dict(settings, run_id: str, path: str) -> dict:
    import mlflow

    registry.configure_mlflow(settings)
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")


def test_test_labels_complete_needs_the_label_delay_past_the_last_test_day() -> None:
    from datetime import UTC, datetime

    from cardscore.jobs.train.stage import labels_cover_test_days
    from cardscore.model.protocol import Protocol

    protocol = Protocol(date(2018, 4, 10), 4, 3, 4)  # test 04-17..04-20
    at = lambda day: datetime(2018, 4, day, 23, 0, tzinfo=UTC)  # noqa: E731
    assert labels_cover_test_days(protocol, at(27), 7)
    assert not labels_cover_test_days(protocol, at(26), 7)
    assert labels_cover_test_days(protocol, at(22), 2)
    assert not labels_cover_test_days(protocol, None, 7)


def test_same_data_versions_and_seed_give_the_same_metrics(trained_world) -> None:
    ctx, world, report = trained_world
    # New silver rows in the training window change the current data, not a pinned version.
    extra = world.transactions[world.transactions["event_time"].dt.strftime("%Y-%m-%d") == "2018-04-11"].head(50).copy()
    extra["transaction_id"] += 10_000_000
    write_silver_append(ctx.lake, extra)
    pinned = train(ctx, TrainingParams(data_versions=report.data_versions, register=False))
    assert pinned.test == report.test and pinned.train == report.train
    current = train(ctx, TrainingParams(register=False))
    assert current.data_versions[catalog.SILVER_TRANSACTIONS] == 1
    assert current.sizes["train_transactions"] == report.sizes["train_transactions"] + 50


def write_silver_append(lake, transactions) -> None:
    from cardscore.schemas.contracts import SILVER_TRANSACTION
    from tests.features.worlds import silver_transactions

    frame = lake.spark.createDataFrame(silver_transactions(transactions), SILVER_TRANSACTION.spark_schema())
    lake.append(frame, catalog.SILVER_TRANSACTIONS, partition_by=SILVER_TRANSACTION.partition_by)


def test_job_entry_point_exits_1_when_the_gate_fails(trained_world) -> None:
    """`python jobs/train/main.py` against the session's engine: a gate failure exits 1, says
    which check failed and moves no alias; a test week whose labels cannot all be in is named."""
    from cardscore.core.engine import embedded_url

    ctx, _, _ = trained_world
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE__")}
    env.update({
        "CARDSCORE__HOME": str(ctx.settings.home_path),
        "CARDSCORE__LOGGING__FORMAT": "json",
        **{f"CARDSCORE__TRAINING__PROTOCOL__{k.upper()}": str(v) for k, v in PROTOCOL.items()},
        "CARDSCORE__TRAINING__GATE__MIN_AUC_ROC": "0.999",
        # Labels said to take 30 days: the world's feed (7 days past the test week) is too short.
        "CARDSCORE__MONITORING__LABEL_DELAY_DAYS": "30",
    })
    proc = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "train" / "main.py"), "--remote", embedded_url(ctx.settings),
         "--actor", "ci"],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO),
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "rejected by the validation gate" in proc.stderr and "AUC ROC" in proc.stderr
    assert "minimum 0.9990" in proc.stderr
    assert '"event": "train.test_labels_incomplete"' in proc.stderr
    model = registry.client(ctx.settings).get_registered_model(ctx.settings.mlflow.model_name)
    assert {a: str(v) for a, v in model.aliases.items()} == {"challenger": "1"}  # nothing moved
    rejected = registry.get_version(ctx.settings, max(int(v.version) for v in registry.list_versions(ctx.settings)))
    assert rejected.tags["gate"] == "failed"
    assert "[FAIL] AUC ROC" in rejected.tags["gate.summary"]


def test_the_model_card_warns_when_test_labels_may_be_incomplete() -> None:
    from cardscore.model.card import CardInputs, model_card
    from cardscore.model.evaluation import Evaluation

    def card(complete: bool) -> str:
        metrics = Evaluation(0.9, 0.7, 0.3, 100)
        lineage = {"tables": {}, "test_labels_complete": complete, "last_label_reported": "2018-04-24T10:00:00+00:00"}
        return model_card(CardInputs("m", "run", "abc", ["f"], "svc", {}, lineage, {}, metrics, metrics))

    assert "Test labels may be incomplete" in card(False) and "2018-04-24T10:00" in card(False)
    assert "incomplete" not in card(True)


def test_training_on_the_fresh_feature_set(trained_world) -> None:
    """`training.feature_set: snapshot_fresh_v1`: the training sets carry the fresh features of
    gold.fresh_features (refused, with the command to run, while that table lacks the days);
    the version records its set, its input order and the table version read."""
    import json

    from cardscore.core.errors import StageFailed
    from cardscore.features.feature_sets import SNAPSHOT_FRESH_V1
    from cardscore.features.fresh_serving import FreshRowsMissing
    from cardscore.jobs.fresh_features.stage import fresh_features_range

    ctx, _world, _report = trained_world

    def context(feature_set: str):
        settings = load_settings(overrides={
            "home": str(ctx.settings.home_path),
            "mlflow": {"model_name": f"fresh-{feature_set}"},
            "training": {"protocol": PROTOCOL, "gate": GATE, "feature_set": feature_set},
        })
        return job_context(settings, ctx.spark)

    with pytest.raises(StageFailed, match=r"training.feature_set: unknown feature set 'nope'.*snapshot_fresh_v1"):
        train(context("nope"), TrainingParams(register=False))
    fresh_ctx = context(SNAPSHOT_FRESH_V1.name)
    with pytest.raises(FreshRowsMissing, match=r"cardscore run fresh_features --from 2018-04-10 --to 2018-04-20"):
        train(fresh_ctx, TrainingParams(register=False))

    fresh_features_range(fresh_ctx, date(2018, 4, 10), date(2018, 4, 20))
    report = train(fresh_ctx, TrainingParams(actor="tester", reason="fresh feature set"))
    assert report.feature_names == list(SNAPSHOT_FRESH_V1.features)
    assert report.data_versions[catalog.FRESH_FEATURES] == ctx.lake.version(catalog.FRESH_FEATURES)
    ref = registry.get_version(fresh_ctx.settings, report.version)
    assert ref.feature_names == SNAPSHOT_FRESH_V1.features
    assert ref.tags[registry.TAG_FEATURE_SET] == SNAPSHOT_FRESH_V1.name
    assert json.loads(ref.tags[registry.TAG_FEATURE_NAMES]) == list(SNAPSHOT_FRESH_V1.features)
    booster = registry.load_booster(fresh_ctx.settings, ref)
    assert tuple(booster.feature_names) == SNAPSHOT_FRESH_V1.features
    assert mlflow_dict(fresh_ctx.settings, report.run_id, "lineage.json")["feature_set"] == SNAPSHOT_FRESH_V1.name
