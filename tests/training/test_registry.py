"""The validation gate, registration and alias moves on a real MLflow sqlite registry."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import xgboost as xgb

from cardscore.core import registry
from cardscore.core.config import Settings
from cardscore.core.errors import MissingInput, StageFailed
from cardscore.jobs.train.stage import GateRejected, TrainingParams, train_on_sets
from tests.training.synthetic import FEATURES, training_sets

pytestmark = pytest.mark.engine  # a real MLflow registry


def aliases(settings: Settings) -> dict[str, str]:
    model = registry.client(settings).get_registered_model(settings.mlflow.model_name)
    return {a: str(v) for a, v in (model.aliases or {}).items()}


def shuffled_labels(sets):
    """A deliberately worse model: trained on labels shuffled across rows."""
    train = sets.train.copy()
    train["label"] = np.random.default_rng(5).permutation(train["label"].to_numpy())
    sets.train = train
    return sets


def test_gate_promote_rollback_lifecycle(training_settings: Settings) -> None:
    settings = training_settings
    first = train_on_sets(settings, training_sets(seed=0), TrainingParams(actor="alice", reason="first model"))
    assert first.version == "1" and first.challenger and first.gate.passed
    # no champion yet: the regression checks pass trivially and say so
    assert all("no champion yet" in c.detail for c in first.gate.checks if c.name.startswith("no_regression"))
    assert aliases(settings) == {"challenger": "1"}
    v1 = registry.get_version(settings, "1")
    assert v1.tags["challenger.by"] == "alice" and v1.tags["gate"] == "passed"
    assert v1.feature_names == tuple(FEATURES) and v1.feature_service == "synthetic_v1"

    with pytest.raises(MissingInput):
        registry.rollback(settings, actor="alice", reason="nothing to roll back to")
    moved = registry.promote(settings, actor="bob", reason="first champion")
    assert (moved.version, moved.previous_version, moved.actor) == ("1", None, "bob")
    assert aliases(settings) == {"champion": "1"}  # the challenger became the champion
    assert registry.resolve_alias(settings).version == "1"

    # A worse model on the same test set: rejected, registered as failed, no alias moves.
    with pytest.raises(GateRejected) as rejected:
        train_on_sets(settings, shuffled_labels(training_sets(seed=0)), TrainingParams(actor="alice"))
    report = rejected.value.report
    assert rejected.value.exit_code == 1
    assert report.version == "2" and not report.challenger and not report.gate.passed
    failed = {c.name for c in report.gate.failures}
    assert {"no_regression_auc_roc", "no_regression_average_precision", "min_auc_roc"} <= failed
    assert "champion v1" in str(rejected.value)
    assert aliases(settings) == {"champion": "1"}
    assert registry.get_version(settings, "2").tags["gate"] == "failed"
    # the champion was re-scored on this run's test set
    champion_run = registry.client(settings).get_run(report.run_id).data.metrics
    assert champion_run["champion_test_auc_roc"] == pytest.approx(first.test.auc_roc)
    with pytest.raises(StageFailed, match="did not pass the validation gate"):
        registry.promote(settings, actor="bob", reason="try", version="2")

    # A comparable model (another seed of the same world) passes and becomes challenger.
    third = train_on_sets(settings, training_sets(seed=0), TrainingParams(actor="carol", reason="retrain"))
    assert third.version == "3" and third.gate.passed
    assert aliases(settings) == {"champion": "1", "challenger": "3"}
    registry.promote(settings, actor="dave", reason="weekly promotion")
    assert aliases(settings) == {"champion": "3", "previous-champion": "1"}
    v3, v1 = registry.get_version(settings, "3"), registry.get_version(settings, "1")
    assert (v3.tags["promote.by"], v3.tags["promote.reason"]) == ("dave", "weekly promotion")
    assert v3.tags[registry.TAG_PREDECESSOR] == "1"
    assert v1.tags["demote.by"] == "dave"

    back = registry.rollback(settings, actor="erin", reason="alert: precision dropped")
    assert (back.version, back.previous_version) == ("1", "3")
    assert aliases(settings) == {"champion": "1"}
    v3, v1 = registry.get_version(settings, "3"), registry.get_version(settings, "1")
    assert (v3.tags["rolled_back.by"], v3.tags["rolled_back.reason"]) == ("erin", "alert: precision dropped")
    assert v1.tags["restore.by"] == "erin" and v1.tags["restore.at"].endswith("Z")
    events = [json.loads(v) for k, v in v1.tags.items() if k.startswith("transition.")]
    assert {e["action"] for e in events} == {"challenger", "promote", "demote", "restore"}
    assert all(e["by"] and e["at"] and e["reason"] for e in events)


def test_pyfunc_by_alias_equals_the_raw_booster(training_settings: Settings) -> None:
    settings = training_settings
    sets = training_sets(seed=1)
    train_on_sets(settings, sets, TrainingParams(actor="alice"))
    registry.promote(settings, actor="alice", reason="test")
    ref = registry.resolve_alias(settings, "champion")
    booster = registry.load_booster(settings, ref)
    assert isinstance(booster, xgb.Booster)
    assert booster.feature_names == FEATURES == list(ref.feature_names)
    assert registry.load_booster(settings, ref) is booster  # cached by version

    pyfunc = mlflow.pyfunc.load_model(f"models:/{settings.mlflow.model_name}@champion")
    frame = sets.test[FEATURES].astype("float64")
    frame.loc[frame.index[:5], "f_weak"] = np.nan  # missing values are accepted as float64
    expected = booster.predict(xgb.DMatrix(frame))
    assert np.array_equal(np.asarray(pyfunc.predict(frame)), expected)
    # integer-typed counts are accepted once cast to the declared float64
    assert pyfunc.metadata.get_input_schema().input_types()[0].name == "double"

    run = registry.client(settings).get_run(ref.run_id)
    assert run.data.params["feature_service"] == "synthetic_v1"
    assert run.data.tags["code_version"]
    artifacts = {a.path for a in registry.client(settings).list_artifacts(ref.run_id)}
    assert {"plots", "model_card.md", "lineage.json", "features.json", "gate.json"} <= artifacts
    plots = {a.path for a in registry.client(settings).list_artifacts(ref.run_id, "plots")}
    assert {"plots/roc_curve.png", "plots/pr_curve.png", "plots/feature_importance.png",
            "plots/score_distribution.png"} <= plots
    card = mlflow.artifacts.load_text(f"runs:/{ref.run_id}/model_card.md")
    assert "Intended use" in card and "handbook XGBoost" in card and "v1" in card
    model_dir = mlflow.artifacts.download_artifacts(registry.client(settings).get_model_version_download_uri(
        ref.name, ref.version))
    requirements = (Path(model_dir) / "requirements.txt").read_text()
    assert f"xgboost=={xgb.__version__}" in requirements
    assert (Path(model_dir) / "model.json").is_file()  # XGBoost native JSON
    assert not list(Path(model_dir).glob("*.pkl"))  # native format, no pickle


def test_no_champion_alias_is_a_clear_missing_input(training_settings: Settings) -> None:
    with pytest.raises(MissingInput, match="has no 'champion' version"):
        registry.resolve_alias(training_settings)
    assert registry.find_alias(training_settings) is None
