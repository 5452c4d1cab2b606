"""`jobs/monitor.py` on the monitoring world: real Delta, Feast, MLflow, scorer and trainer."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from cardscore import registry
from features.definitions import MODEL_FEATURES
from jobs.monitor import monitor_day, pipeline_stage, read_rows
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
    again = read_rows(ctx, LAST_DAY, LAST_DAY)
    assert len(again) == len(rows) and set(again["run_id"]) == {second.run_id}  # replaced, not appended
    assert second.mlflow_run_id == first.mlflow_run_id  # one monitoring run per day
    run = registry.client(ctx.settings).get_run(second.mlflow_run_id)
    assert run.data.tags["model_version"] == monitoring_world.version
    assert "score_psi" in run.data.metrics


def test_many_unknown_entities_alert_and_the_nightly_stage_reports_them(spark, monitoring_world) -> None:
    """The day's predictions with most customers unknown (as when the snapshot is missing)."""
    base = job_for(spark, monitoring_world)
    predictions = base.lake.read(base.settings.scoring.output_table).where(f"tx_date = DATE'{LAST_DAY}'")
    from pyspark.sql import functions as F

    flagged = predictions.withColumn("unknown_customer", F.col("transaction_id") % 10 != 0)
    table = f"gold.predictions_{uuid.uuid4().hex[:8]}"
    base.lake.overwrite(flagged, table, partition_by=["tx_date"])
    ctx = job_for(spark, monitoring_world, scoring={"output_table": table},
                  monitoring={"output_table": _table(), "log_to_mlflow": False})

    outcome = pipeline_stage(ctx, LAST_DAY)

    alerts = outcome.details["alerts"]
    assert [a["metric"] for a in alerts] == ["unknown_customer_rate"]
    assert alerts[0]["value"] == pytest.approx(0.9, abs=0.1) and alerts[0]["threshold"] == 0.2
    assert outcome.model_version == monitoring_world.version and outcome.status == "succeeded"
