"""`jobs/monitor/main.py` on the monitoring world: real Delta, Feast, MLflow, scorer and trainer."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cardscore.core import registry
from cardscore.core.stage import StageCall
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.jobs.monitor.stage import SPEC as MONITOR
from cardscore.jobs.monitor.stage import monitor_day, read_rows
from cardscore.jobs.retrain.stage import retraining_trigger
from tests.monitoring.conftest import JUDGED_DAY, LAST_DAY, job_for


def _table() -> str:
    return f"ops.monitoring_{uuid.uuid4().hex[:8]}"


def test_a_stationary_day_raises_no_alert_and_is_published_idempotently(spark, monitoring_world) -> None:
    ctx = job_for(spark, monitoring_world, monitoring={"output_table": _table()})
    first = monitor_day(ctx, LAST_DAY)

    assert first.alerts == [], [a.describe() for a in first.alerts]
    assert first.model_version == monitoring_world.version and first.reference == "artifact"
    rows = read_rows(ctx, LAST_DAY, LAST_DAY)
    psi = rows[rows["metric"] == "feature_psi"].set_index("subject")["value"]
    assert set(psi.index) == set(MODEL_FEATURES) - {"tx_during_weekend"}  # excluded by default
    assert (psi < ctx.settings.monitoring.drift.feature_psi).all()
    assert rows.loc[rows["metric"] == "score_psi", "value"].notna().all()
    fresh = rows[rows["metric"] == "freshness_lag_days"].set_index("subject")["value"]
    assert fresh["silver_transactions"] == 0 and fresh["predictions"] == 0 and fresh["features"] == 0
    # Each scored day appears with its label completeness; only the judged day has thresholds.
    perf = rows[rows["metric"] == "average_precision"].set_index("scored_day")
    assert {d.isoformat() for d in pd.to_datetime(perf.index).date} == {"2018-05-13", "2018-05-19", "2018-05-20"}
    judged = perf.loc[pd.to_datetime(perf.index).date == JUDGED_DAY]
    assert judged["threshold"].notna().all()
    assert json.loads(judged["details"].iloc[0])["labels_complete"] is True
    assert perf.loc[pd.to_datetime(perf.index).date != JUDGED_DAY, "threshold"].isna().all()
    assert first.report_path and "Feature drift" in Path(first.report_path).read_text()

    second = monitor_day(ctx, LAST_DAY)
    trigger = retraining_trigger(ctx, LAST_DAY, dry_run=True)
    assert trigger.decision.fire is False and trigger.training is None
    assert json.loads(json.dumps(trigger.to_dict(), default=str))["decision"]["k"] == 2
    again = read_rows(ctx, LAST_DAY, LAST_DAY)
    assert len(again) == len(rows) and set(again["run_id"]) == {second.run_id}  # replaced, not appended
    assert second.mlflow_run_id == first.mlflow_run_id  # one monitoring run per day
    run = registry.client(ctx.settings).get_run(second.mlflow_run_id)
    assert run.data.tags["model_version"] == monitoring_world.version
    assert "score_psi" in run.data.metrics


def test_many_unknown_entities_alert_the_nightly_stage_and_the_webhook(
    spark, monitoring_world, webhook_server, monkeypatch
) -> None:
    """The day's predictions with most customers unknown (as when the snapshot is missing)."""
    url, received = webhook_server
    monkeypatch.setenv("CARDSCORE_TEST_HOOK_TOKEN", "t0ken")
    base = job_for(spark, monitoring_world)
    predictions = base.lake.read(base.settings.scoring.output_table).where(f"tx_date = DATE'{LAST_DAY}'")
    from pyspark.sql import functions as F

    flagged = predictions.withColumn("unknown_customer", F.col("transaction_id") % 10 != 0)
    table = f"gold.predictions_{uuid.uuid4().hex[:8]}"
    base.lake.overwrite(flagged, table, partition_by=["tx_date"])
    ctx = job_for(spark, monitoring_world, scoring={"output_table": table},
                  monitoring={"output_table": _table(), "log_to_mlflow": False,
                              "webhook": {"url": url.replace("secret-token", "${env:CARDSCORE_TEST_HOOK_TOKEN}")}})
    assert ctx.settings.monitoring.webhook.url.endswith("/hooks/t0ken")

    outcome = MONITOR.run(StageCall(ctx, (LAST_DAY,)))

    alerts = outcome.alerts
    assert outcome.details["alerts"] == alerts
    assert [a["metric"] for a in alerts] == ["unknown_customer_rate"]
    assert alerts[0]["value"] == pytest.approx(0.9, abs=0.1) and alerts[0]["threshold"] == 0.2
    assert outcome.model_version == monitoring_world.version and outcome.status == "succeeded"
    [(body, _)] = received
    assert body["day"] == LAST_DAY.isoformat() and body["model_version"] == monitoring_world.version
    assert body["alerts"] == alerts


# ------------------------------------------------------------------------------ delayed labels


def _cp_at_k_plain(day_rows: pd.DataFrame, k: int) -> float:
    """Card precision@k of one day, from the handbook's definition, in plain pandas."""
    cards = day_rows.groupby("customer_id").agg(score=("score", "max"), fraud=("fraud", "max"))
    top = cards.reset_index().sort_values(["score", "customer_id"], ascending=[False, True]).head(k)
    return top["fraud"].sum() / k


def test_delayed_label_metrics_match_an_independent_computation(spark, monitoring_world) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    ctx = job_for(spark, monitoring_world, monitoring={"output_table": _table(), "log_to_mlflow": False})
    monitor_day(ctx, LAST_DAY)
    rows = read_rows(ctx, LAST_DAY, LAST_DAY)

    labels = monitoring_world.labels
    known = labels[labels["reported_time"] < pd.Timestamp(LAST_DAY + pd.Timedelta(days=1), tz="UTC")]
    predictions = ctx.lake.read(ctx.settings.scoring.output_table).toPandas()
    predictions["fraud"] = predictions["transaction_id"].isin(known.loc[known["is_fraud"], "transaction_id"])
    k = ctx.settings.training.protocol.top_k
    checked = 0
    for day, part in predictions.groupby("tx_date"):
        mine = rows[pd.to_datetime(rows["scored_day"]).dt.date == day].set_index("metric")["value"]
        assert mine["average_precision"] == pytest.approx(average_precision_score(part["fraud"], part["score"]))
        assert mine["auc_roc"] == pytest.approx(roc_auc_score(part["fraud"], part["score"]))
        assert mine["card_precision_at_k"] == pytest.approx(_cp_at_k_plain(part, k))
        details = json.loads(rows[(pd.to_datetime(rows["scored_day"]).dt.date == day)
                                  & (rows["metric"] == "average_precision")]["details"].iloc[0])
        assert details["known_frauds"] == int(part["fraud"].sum())
        assert details["days_since_scoring"] == (LAST_DAY - day).days
        checked += 1
    assert checked == 3
    # Labels known on D only: a label reported after D does not count yet.
    late = labels[labels["reported_time"] >= pd.Timestamp(LAST_DAY + pd.Timedelta(days=1), tz="UTC")]
    assert predictions["transaction_id"].isin(late["transaction_id"]).any(), "the world has late labels"


# ------------------------------------------------------------------------------ injected drift


@pytest.fixture(scope="module")
def day_frames(spark, monitoring_world):
    """The champion's reference and day D's real features and scores (as the job reads them)."""
    from cardscore.jobs.monitor.stage import current_frame, predictions_of, reference_of

    ctx = job_for(spark, monitoring_world)
    ref = registry.get_version(ctx.settings, monitoring_world.version)
    predictions = predictions_of(ctx, LAST_DAY)
    return ctx, reference_of(ctx, ref), current_frame(ctx, LAST_DAY, predictions, list(MODEL_FEATURES))


def _alerting(ctx, reference, current) -> list[tuple[str, str | None]]:
    from cardscore.monitoring.alerts import alerts_of
    from cardscore.monitoring.metrics import drift_rows

    cfg = ctx.settings.monitoring
    rows = drift_rows(current, reference.profile, reference.sample, list(MODEL_FEATURES), cfg.drift,
                      cfg.drift_exclude)
    return sorted({(a.metric, a.feature) for a in alerts_of(LAST_DAY, rows)}, key=str)


def test_shifted_amounts_alert_naming_the_amount_feature(day_frames) -> None:
    ctx, reference, current = day_frames
    assert _alerting(ctx, reference, current) == []  # the day as it is
    shifted = current.assign(tx_amount=current["tx_amount"] * 3)
    assert _alerting(ctx, reference, shifted) == [("feature_ks", "tx_amount"), ("feature_psi", "tx_amount")]


def test_missing_features_alert_naming_each_of_them(day_frames) -> None:
    from cardscore.features.definitions import TERMINAL_FEATURES

    ctx, reference, current = day_frames
    missing = current.assign(**{name: np.nan for name in TERMINAL_FEATURES})
    alerts = _alerting(ctx, reference, missing)
    assert {f for m, f in alerts if m == "feature_null_rate"} == set(TERMINAL_FEATURES)
    assert {f for _, f in alerts} == set(TERMINAL_FEATURES)


def test_a_fraud_scenario_the_model_misses_alerts_on_the_judged_day(spark, monitoring_world) -> None:
    """Frauds the model scores lowest (a new pattern), reported on the judged day's transactions."""
    from cardscore.core.config.monitoring import PerformanceThresholds
    from cardscore.monitoring.alerts import alerts_of
    from cardscore.monitoring.metrics import performance_rows

    ctx = job_for(spark, monitoring_world)
    predictions = ctx.lake.read(ctx.settings.scoring.output_table).select(
        "transaction_id", "customer_id", "score", "model_version", "tx_date").toPandas()
    labels = monitoring_world.labels[["transaction_id", "is_fraud"]]
    # This tiny world's judged day has 45 frauds in 300 transactions (AP cannot fall far below
    # that 15% prevalence), and the model reaches AP 0.69, AUC 0.80 there: floors just below.
    floors = PerformanceThresholds(average_precision=0.6, auc_roc=0.75, card_precision_at_k=0.5)
    kwargs = {"k": 20, "label_delay_days": 7, "thresholds": floors}
    assert alerts_of(LAST_DAY, performance_rows(predictions, labels, LAST_DAY, **kwargs)) == []

    judged = predictions[predictions["tx_date"] == JUDGED_DAY].nsmallest(20, "score")
    missed = pd.DataFrame({"transaction_id": judged["transaction_id"], "is_fraud": True})
    alerts = alerts_of(LAST_DAY, performance_rows(predictions, pd.concat([labels, missed]), LAST_DAY, **kwargs))
    assert {a.metric for a in alerts} == {"average_precision", "auc_roc"}
    assert {a.scored_day for a in alerts} == {JUDGED_DAY.isoformat()}
    assert all(a.model_version == monitoring_world.version for a in alerts)


# ------------------------------------------------------------------------------ references


def test_a_version_without_a_profile_gets_one_computed_from_its_lineage_and_cached(spark, monitoring_world) -> None:
    """A version registered before profiles existed: same booster and lineage as the champion,
    no reference artifacts. Its profile is computed on demand, saved to its run, then reused."""
    import mlflow
    import mlflow.xgboost

    from cardscore.jobs.monitor.stage import reference_of
    from cardscore.model.tracking import ensure_experiment, model_signature
    from cardscore.monitoring.profile import load_from_run

    ctx = job_for(spark, monitoring_world)
    settings = ctx.settings
    champion = registry.get_version(settings, monitoring_world.version)
    lineage = json.loads(Path(registry.client(settings).download_artifacts(
        champion.run_id, "lineage.json", str(monitoring_world.home / "tmp-lineage"))).read_text())
    registry.configure_mlflow(settings)
    with mlflow.start_run(experiment_id=ensure_experiment(settings)) as run:
        info = mlflow.xgboost.log_model(registry.load_booster(settings, champion), name="model",
                                        signature=model_signature(list(MODEL_FEATURES)), model_format="json")
        mlflow.log_dict(lineage, "lineage.json")
    old = registry.register_version(settings, info.model_uri, run.info.run_id,
                                    tags={registry.TAG_FEATURE_NAMES: json.dumps(list(MODEL_FEATURES))})
    assert load_from_run(settings, old.run_id) is None

    computed = reference_of(ctx, old)
    cached = reference_of(ctx, old)
    expected = reference_of(ctx, champion)  # saved by the training job after registration

    assert computed.source == "computed" and cached.source == "artifact" and expected.source == "artifact"
    assert computed.profile.window == expected.profile.window == {
        "source": "test", "first": "2018-05-08", "last": "2018-05-11"}
    assert computed.profile.rows == expected.profile.rows > 0
    for name in MODEL_FEATURES:
        assert computed.profile.features[name] == expected.profile.features[name]
    assert computed.profile.score.edges == pytest.approx(expected.profile.score.edges)
    assert cached.profile.to_dict() == {**computed.profile.to_dict(), "run_id": old.run_id}
    pd.testing.assert_frame_equal(cached.sample, computed.sample)


# ------------------------------------------------------------------------------ trigger


def test_the_trigger_retrains_and_gates_on_k_of_n_violations(spark, monitoring_world) -> None:
    from datetime import timedelta

    from cardscore.monitoring.metrics import MetricRow
    from cardscore.monitoring.table import write_rows

    ctx = job_for(spark, monitoring_world, monitoring={"output_table": _table()})
    before = {v.version for v in registry.list_versions(ctx.settings)}
    write_rows(ctx, LAST_DAY, [MetricRow("score_psi", 0.4, None, 0.25)], "test")
    write_rows(ctx, LAST_DAY - timedelta(days=1), [MetricRow("score_psi", 0.1, None, 0.25)], "test")
    assert not retraining_trigger(ctx, LAST_DAY).decision.fire  # 1 of 5

    write_rows(ctx, LAST_DAY - timedelta(days=3), [MetricRow("feature_psi", 0.5, "tx_amount", 0.25)], "test")
    dry = retraining_trigger(ctx, LAST_DAY, dry_run=True)
    assert dry.decision.fire and dry.training is None
    assert dry.decision.metrics == {"2018-05-17": ["feature_psi[tx_amount]"], "2018-05-20": ["score_psi"]}
    assert {v.version for v in registry.list_versions(ctx.settings)} == before

    fired = retraining_trigger(ctx, LAST_DAY)

    assert fired.decision.fire and fired.error is None, fired.error
    # The newest window whose test labels are complete on D: test days end on D - 7.
    assert fired.training["train_start"] == "2018-05-03"
    new = registry.get_version(ctx.settings, fired.training["version"])
    assert new.version not in before and new.tags[registry.TAG_GATE] == "passed"
    assert registry.find_alias(ctx.settings, "challenger").version == new.version
    assert registry.find_alias(ctx.settings, "champion").version == monitoring_world.version  # a decision
    from cardscore.monitoring.profile import load_from_run

    profile = load_from_run(ctx.settings, new.run_id).profile
    assert profile.window == {"source": "test", "first": "2018-05-10", "last": "2018-05-13"}

    # A rerun of the night, or the next nights of the same episode: the cool-down holds.
    again = retraining_trigger(ctx, LAST_DAY)
    assert not again.decision.fire and again.training is None
    assert f"version {new.version} was trained by the trigger for {LAST_DAY}" in again.decision.reason
    assert {v.version for v in registry.list_versions(ctx.settings)} == before | {new.version}
    # Once the cool-down (default 5 days, the window) is over, it may fire again.
    from cardscore.jobs.retrain.stage import TAG_TRIGGER_DAY, trigger_versions_since

    assert trigger_versions_since(ctx.settings, LAST_DAY + timedelta(days=1), LAST_DAY + timedelta(days=5)) == []
    assert trigger_versions_since(ctx.settings, LAST_DAY, LAST_DAY + timedelta(days=4)) == [(new.version, LAST_DAY)]
    # A hand-edited, unreadable tag on another version is left out, not fatal.
    registry.client(ctx.settings).set_model_version_tag(
        ctx.settings.mlflow.model_name, monitoring_world.version, TAG_TRIGGER_DAY, "last tuesday")
    assert trigger_versions_since(ctx.settings, LAST_DAY, LAST_DAY + timedelta(days=4)) == [(new.version, LAST_DAY)]
