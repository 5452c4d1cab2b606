"""Automated rollback end to end: a bad challenger (trained on shuffled labels) goes through
shadow -> canary; the monitoring stage compares it with the champion on the same
transactions, alerts while it is a shadow, aborts the canary by itself (share 0, recorded
who/why/when on the registry) once it serves cards, and nothing is lost: the next run
scores every transaction with the champion."""

from __future__ import annotations

import json
import uuid

import numpy as np
import xgboost as xgb

from cardscore.core import registry, release
from cardscore.core.config import load_settings
from cardscore.core.stage import job_context
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.jobs.monitor.stage import monitor_day
from cardscore.jobs.score_batch.stage import score_day
from tests.scoring import world


def shuffled_label_booster(spark, settings, transactions) -> xgb.Booster:
    """The champion's recipe on the same features, with the labels shuffled: no skill."""
    days = transactions[transactions["tx_date"].isin(world.TRAIN_DAYS)]
    frame = world.training_path_features(spark, settings, days)
    labels = days.set_index("transaction_id").loc[frame["transaction_id"], "tx_fraud"].to_numpy()
    data = xgb.DMatrix(frame[list(MODEL_FEATURES)].to_numpy(np.float64),
                       label=np.random.default_rng(3).permutation(labels), feature_names=list(MODEL_FEATURES))
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": 7, "nthread": 1}
    return xgb.train(params, data, num_boost_round=25)


def test_a_bad_canary_is_aborted_by_the_monitoring_stage(spark, scoring_world, tmp_path) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(overrides={
        "home": str(scoring_world.settings.home_path),
        "scoring": {"output_table": f"gold.predictions_{suffix}"},
        "mlflow": {"model_name": f"rollback-{suffix}"},  # this test moves aliases
        "monitoring": {"output_table": f"ops.monitoring_{suffix}", "reports_dir": str(tmp_path / "reports")},
        # The test day has ~140 transactions: judge arms from 50 paired transactions on.
        "release": {"criteria": {"min_rows": 50}},
    })
    job = job_context(settings, spark)
    champion = world.register(settings, scoring_world.booster)
    bad = world.register(settings, shuffled_label_booster(spark, settings, scoring_world.transactions), promote=False)
    silver_rows = len(world.silver_day(scoring_world.transactions, world.DAY))

    # Shadow: measured against the champion on every transaction, alerted, never served.
    release.start_shadow(settings, bad, actor="alice", reason="try the new model")
    score_day(job, world.DAY)
    shadowed = monitor_day(job, world.DAY)
    breached = [a for a in shadowed.alerts if a.metric.startswith("release_")]
    assert breached and all(a.model_version == bad for a in breached), shadowed.alerts
    assert shadowed.release["aborted"] is None and shadowed.release["breaches"]
    assert any("shadow" in n and "nothing to abort" in n for n in shadowed.notes)
    assert release.read_state(settings).shadow == bad

    # Canary: a person ramps it anyway; the next monitoring run aborts it by itself.
    release.set_canary(settings, 25, bad, actor="alice", reason="looks fine to me")
    scored = score_day(job, world.DAY)
    assert scored.arms.get("canary", 0) > 0
    checked = monitor_day(job, world.DAY)
    state = release.read_state(settings)
    assert (state.canary, state.share) == (None, 0.0) and not release.read_view(settings).state.canary_active
    actor = settings.release.automation_actor
    assert (state.aborted.version, state.aborted.by, state.aborted.share) == (bad, actor, 25.0)
    assert state.aborted.reason.startswith(f"automatic rollback: monitoring {world.DAY.isoformat()}")
    assert checked.release["aborted"]["by"] == actor and checked.alerts
    last = release.history(settings, limit=1)[0]
    assert (last["action"], last["by"], last["version"]) == ("abort", actor, bad)
    logged = registry.client(settings).get_run(checked.mlflow_run_id).data.metrics  # the comparison in MLflow
    assert logged["release_score_psi"] > 0.25 and "release_arm_alert_rate.canary" in logged
    report = (tmp_path / "reports" / world.DAY.isoformat() / "report.html").read_text()
    assert "Release: arms" in report and f"candidate v{bad} vs champion" in report

    # Nothing lost: the next run serves every transaction with the champion (the shadow stays).
    after = score_day(job, world.DAY)
    assert after.arms == {"champion": silver_rows} and after.rows == silver_rows
    published = world.predictions(job.lake, settings, world.DAY)
    assert (published["model_version"] == champion).all()
    assert json.loads(json.dumps(checked.to_dict()))  # the report serialises (ledger, CLI)


def test_the_precision_criterion_judges_the_day_whose_labels_are_complete(spark, scoring_world, tmp_path) -> None:
    """Monitoring D compares the candidate's average precision with the champion's on
    D - label_delay_days, the same transactions, with the frauds reported by D."""
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(overrides={
        "home": str(scoring_world.settings.home_path),
        "scoring": {"output_table": f"gold.predictions_{suffix}"},
        "mlflow": {"model_name": f"precision-{suffix}"},
        "monitoring": {"output_table": f"ops.monitoring_{suffix}", "reports_dir": str(tmp_path / "reports"),
                       "label_delay_days": 1, "log_to_mlflow": False},
        "release": {"criteria": {"min_rows": 50, "min_frauds": 1}},
    })
    job = job_context(settings, spark)
    world.register(settings, scoring_world.booster)
    bad = world.register(settings, shuffled_label_booster(spark, settings, scoring_world.transactions), promote=False)
    release.start_shadow(settings, bad, actor="alice", reason="try it")
    score_day(job, world.DAY)
    score_day(job, world.NEXT_DAY)

    checked = monitor_day(job, world.NEXT_DAY)
    from cardscore.monitoring.table import read_rows

    rows = read_rows(job, world.NEXT_DAY, world.NEXT_DAY)
    precision = rows[rows["metric"] == "release_precision_ratio"]
    assert len(precision) == 1, checked.notes
    row = precision.iloc[0]
    assert str(row["scored_day"])[:10] == world.DAY.isoformat() and row["model_version"] == bad
    details = json.loads(row["details"]) if isinstance(row["details"], str) else row["details"]
    assert details["known_frauds"] >= 1 and details["champion_ap"] > details["candidate_ap"]
