# Databricks notebook source
# MAGIC %md
# MAGIC # 06 · Monitoring
# MAGIC
# MAGIC Monitors a scored day the way the nightly pipeline does (`jobs/monitor/main.py`): feature and
# MAGIC score drift (PSI, KS) against the reference profile of the model version that scored it,
# MAGIC unknown-entity shares, delayed-label performance of the recent scored days (with how
# MAGIC complete their labels are), freshness of every input; rows in `ops.monitoring` (a rerun
# MAGIC replaces the day), an HTML report, a monitoring run in MLflow, and alerts for violated
# MAGIC thresholds. Shows the alerts, the metrics, the drift chart and the report.
# MAGIC
# MAGIC **Run it** after `04_batch_score` (the day must be scored), on Databricks or locally:
# MAGIC `CARDSCORE_NB_CONFIG=notebooks/small_world.yaml python notebooks/06_monitoring.py`

# COMMAND ----------

# ruff: noqa: E402 (each cell imports what it uses, as notebooks do)
from cardscore import notebook as nb

settings = nb.settings()
_, last_world_day = nb.world_days(settings)
DAY = nb.day_param("day", last_world_day)  # the scored day to monitor
TRIGGER = nb.flag_param("trigger", False)  # also evaluate the retraining trigger (dry run: nothing starts)
print(f"monitor {DAY} into {settings.monitoring.output_table}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Monitor the day

# COMMAND ----------

from cardscore.jobs.monitor.stage import SPEC as MONITOR
from cardscore.jobs.retrain.stage import SPEC as RETRAIN

ctx = nb.job_context(settings)
report = nb.run_stage(MONITOR, ctx, [DAY])[0]
nb.display({k: v for k, v in report.to_dict().items() if k not in ("alerts", "phase_seconds")}, "monitoring run")
if TRIGGER:  # the retraining trigger's decision for the day (dry run: nothing is trained)
    nb.display(nb.run_stage(RETRAIN, ctx, [DAY], dry_run=True)[0].to_dict(), "retraining trigger")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Alerts
# MAGIC A violated threshold (`monitoring.*` settings): in the nightly pipeline it is exit code 3 and
# MAGIC a webhook call when one is configured.

# COMMAND ----------

import pandas as pd

alerts = pd.DataFrame([a.to_dict() for a in report.alerts])
if alerts.empty:
    print(f"no alert on {DAY}")
else:
    nb.display(alerts, f"{len(alerts)} alert(s) on {DAY}", rows=len(alerts))

# COMMAND ----------

# MAGIC %md
# MAGIC ## The day's metrics
# MAGIC Every value is a row of `ops.monitoring`: drift per feature, the score, unknown entities,
# MAGIC performance per scored day and model version, freshness per input.

# COMMAND ----------

from cardscore.jobs.monitor.stage import read_rows

metrics = read_rows(ctx, DAY, DAY)
nb.display(metrics[["metric", "subject", "scored_day", "model_version", "value", "threshold", "violated"]]
           .sort_values(["metric", "subject"], na_position="first"), f"ops.monitoring {DAY}", rows=len(metrics))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Drift and the full report

# COMMAND ----------

from pathlib import Path

from cardscore.monitoring.metrics import MetricRow
from cardscore.monitoring.report import psi_chart

drift = [MetricRow(metric=r.metric, value=r.value, subject=r.subject, threshold=r.threshold)
         for r in metrics.itertuples() if r.metric == "feature_psi"]
chart = psi_chart(drift)
if chart:
    nb.display(chart, "feature_drift")
if report.report_path:
    nb.display(Path(report.report_path), "monitoring report")
