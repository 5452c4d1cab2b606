"""Monitor day D: drift, delayed-label performance, freshness, stream health, alerts.

    spark-submit jobs/monitor/main.py --date 2018-05-01
    python jobs/monitor/main.py --from 2018-05-01 --to 2018-05-31      # backfill, day by day
    cardscore run monitor --date 2018-05-01                            # the same, with progress

For day D, against the reference profile of the model version that scored D (its training
run's `reference/` artifacts; computed once from the run's lineage and cached there for
models trained before profiles existed):

* **drift**: per model feature PSI (reference quantile bins) and KS (reference sample), null
  rates; PSI/KS of the day's scores; unknown-customer/terminal shares of the predictions;
* **delayed-label performance**: AUC, AP and card precision@k of every scored day of the last
  `monitoring.performance_window_days`, per model version, with the labels known on D, and how
  complete those labels are (days since scoring vs `label_delay_days`);
* **freshness**: D minus the latest day of silver transactions/labels, gold snapshots, the
  online store (nightly ledger) and predictions;
* **stream health** from the stream scorer's Prometheus endpoint, when configured.

Every value is a row of `ops.monitoring` (the day's rows replace D: reruns are idempotent);
the HTML report goes to `<home>/monitoring/<D>/report.html` and, with the metrics, to a
monitoring run in MLflow tagged with the model version. A violated threshold is an alert:
a `monitor.alert` log line naming metric, feature, value and threshold, a webhook POST when
configured, and exit code 1 (3 in the nightly, whose data are then published). The retraining
trigger is a stage of its own (jobs/retrain): the nightly runs it after monitoring when
`monitoring.trigger.enabled`; `cardscore monitor trigger` runs it alone.

The table `ops.monitoring` (partitioned by `day`), one row per measured value:

    metric         feature_psi | feature_ks | feature_mean | feature_null_rate | score_psi |
                   score_ks | score_mean | rows | unknown_customer_rate | unknown_terminal_rate |
                   auc_roc | average_precision | card_precision_at_k | label_completeness |
                   freshness_lag_days | stream_up | stream_counter | stream_dlq_rate
    subject        the feature, input table or stream counter (null for day-wide metrics)
    scored_day     performance rows: the scored day the value is about
    model_version  the version whose reference / predictions the value is about
    value          null when undefined (AUC without frauds, a missing input)
    threshold      the bound, when the metric has one (performance: only on D - label delay)
    direction      max (value above the bound violates) or min (below)
    violated       whether this row is an alert
    details        JSON: KS p-value, bin proportions, reference mean, label counts, latest day...
    run_id, computed_at, day
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cardscore.core import catalog
from cardscore.core.errors import StageFailed
from cardscore.core.logs import get_logger
from cardscore.core.stage import SKIPPED, Input, JobContext, StageCall, StageOutcome, StageSpec
from cardscore.core.timing import PhaseTimer, Progress
from cardscore.jobs.monitor.release import release_check
from cardscore.jobs.monitor.report import summary
from cardscore.monitoring.alerts import Alert, alerts_of, log_alerts, post_webhook
from cardscore.monitoring.metrics import (
    MetricRow,
    drift_rows,
    freshness_rows,
    performance_rows_from_stats,
    unknown_rows_of_counts,
)
from cardscore.monitoring.profile import SCORE, Reference
from cardscore.monitoring.reference import features_of_days, reference_of
from cardscore.monitoring.table import read_rows, write_rows

if TYPE_CHECKING:
    from cardscore.core.registry import ModelRef

STAGE = "monitor"
# Inputs whose absence is not an alert: the label feed is empty until the first fraud report.
OPTIONAL_INPUTS = frozenset({"silver_labels"})
log = get_logger("jobs.monitor")

@dataclass
class MonitorReport:
    """What monitoring day D found and where it put it (the nightly ledger records it)."""

    day: date
    run_id: str
    model_name: str | None
    model_version: str | None
    reference: str | None  # artifact | computed | None (no model: no drift)
    predictions: int  # rows of D's predictions
    metrics: int  # rows written to the monitoring table
    alerts: list[Alert]
    max_feature_psi: float | None
    max_feature_psi_feature: str | None
    score_psi: float | None
    inputs: dict[str, int | None]  # table -> Delta version when the day was read
    output_table: str
    output_version: int | None
    report_path: str | None
    mlflow_run_id: str | None
    seconds: float
    phase_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    trigger: dict[str, Any] | None = None  # the retraining trigger's outcome, when it ran after
    release: dict[str, Any] | None = None  # arms, rollback breaches, the automatic abort

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        out["alerts"] = [a.to_dict() for a in self.alerts]
        return out

    def outcome(self) -> StageOutcome:
        details = self.to_dict()
        for key in ("model_version", "inputs"):
            details.pop(key)
        message = (f"{len(self.alerts)} alert(s): " + "; ".join(a.describe() for a in self.alerts[:5])
                   if self.alerts else f"no alert ({self.metrics} metrics)")
        return StageOutcome(
            inputs=dict(self.inputs),
            outputs={self.output_table: self.output_version},
            model_version=self.model_version,
            details=details,
            message=message,
            report=self,
            alerts=[a.to_dict() for a in self.alerts],
        )


# ------------------------------------------------------------------------------ the day


def monitor_day(
    ctx: JobContext,
    day: date,
    *,
    progress: Progress | None = None,
) -> MonitorReport:
    """Compute, publish, report and alert for day `day`. Never raises for an alert (the report
    lists them; `main` and the CLI turn them into exit code 1)."""
    started = time.perf_counter()
    phase = PhaseTimer(progress)
    settings, cfg = ctx.settings, ctx.settings.monitoring
    run_id = f"monitor-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
    notes: list[str] = []
    rows: list[MetricRow] = []

    phase("inputs")
    inputs = {t: ctx.lake.version(t) for t in (settings.scoring.output_table, catalog.SILVER_TRANSACTIONS,
                                                 catalog.SILVER_LABELS)}
    predictions = predictions_of(ctx, day)
    ref = _model_of(ctx, predictions)
    reference: Reference | None = None
    if ref is not None:
        try:
            reference = reference_of(ctx, ref)
        except Exception as exc:  # the other metrics are still worth having
            log.error("monitor.reference_failed", version=ref.version, error=f"{type(exc).__name__}: {exc}")
            notes.append(f"v{ref.version}: reference profile failed ({type(exc).__name__}: {exc}): drift skipped")
        else:
            if reference is None:
                notes.append(f"v{ref.version}: no reference profile and no lineage to compute one: drift skipped")
    elif predictions.empty:
        notes.append("no predictions and no champion: drift skipped")

    phase("drift")
    version = ref.version if ref else None
    current: pd.DataFrame | None = None
    if not predictions.empty:
        rows += unknown_rows_of_counts(predictions.rows, predictions.unknown, cfg.drift, version)
    if reference is not None and not predictions.empty:
        features = list(ref.feature_names or reference.profile.features)
        current = current_frame(ctx, day, predictions, features)
        rows += drift_rows(current, reference.profile, reference.sample, features, cfg.drift,
                           cfg.drift_exclude, version)

    phase("performance")
    rows += _performance(ctx, day)

    phase("release")  # arms compared; a breaching canary is aborted here (jobs/monitor/release.py)
    checked = release_check(ctx, day)
    rows += checked.rows
    notes += checked.notes

    phase("freshness")
    latest = latest_days(ctx)
    if ref is None:  # no model to score with yet: missing predictions are expected
        latest.pop("predictions", None)
    rows += freshness_rows(day, latest, cfg.freshness.model_dump(), optional=OPTIONAL_INPUTS)
    if cfg.stream_metrics_url:
        rows += stream_rows(cfg.stream_metrics_url, cfg.stream_timeout_seconds, cfg.stream_dlq_rate)

    phase("publish")
    version_out = write_rows(ctx, day, rows, run_id)
    alerts = alerts_of(day, rows)
    log_alerts(alerts)

    phase("report")
    report_path = None
    try:
        from cardscore.monitoring.report import render_report

        history = _history(ctx, day)
        report_path = str(render_report(
            reports_dir(settings) / day.isoformat() / "report.html", day, rows, alerts, history,
            reference, current, ref, notes,
        ))
    except Exception as exc:  # a picture must not lose the day's metrics
        log.error("monitor.report_failed", day=day.isoformat(), error=f"{type(exc).__name__}: {exc}")
        notes.append(f"report failed: {type(exc).__name__}: {exc}")
    mlflow_run = None
    phase("mlflow")
    if cfg.log_to_mlflow:
        try:
            mlflow_run = _log_mlflow(settings, day, rows, alerts, ref, report_path, run_id)
        except Exception as exc:
            log.error("monitor.mlflow_failed", day=day.isoformat(), error=f"{type(exc).__name__}: {exc}")
            notes.append(f"MLflow logging failed: {type(exc).__name__}: {exc}")
    if alerts and cfg.webhook.url:
        post_webhook(cfg.webhook.url, _webhook_payload(day, alerts, report_path, ref),
                     cfg.webhook.timeout_seconds, cfg.webhook.headers)

    psi = [(r.value, r.subject) for r in rows if r.metric == "feature_psi" and r.value is not None]
    top = max(psi) if psi else (None, None)
    score_psi = next((r.value for r in rows if r.metric == "score_psi"), None)
    report = MonitorReport(
        day=day, run_id=run_id, model_name=ref.name if ref else None, model_version=version,
        reference=reference.source if reference else None, predictions=len(predictions),
        metrics=len(rows), alerts=alerts, max_feature_psi=top[0], max_feature_psi_feature=top[1],
        score_psi=score_psi, inputs=inputs, output_table=cfg.output_table, output_version=version_out,
        report_path=report_path, mlflow_run_id=mlflow_run, seconds=0.0, notes=notes,
        release=checked.summary(),
    )
    report.phase_seconds = phase.finish()
    report.seconds = round(time.perf_counter() - started, 3)
    log.info("monitor.done", day=day.isoformat(), model_version=version, metrics=len(rows),
             alerts=len(alerts), seconds=report.seconds, report=report_path)
    return report


# ------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class DayPredictions:
    """What monitoring needs of a day's predictions, counted in the engine (the day's rows are
    never collected: a day can hold millions)."""

    rows: int
    unknown: dict[str, int]  # unknown_customer / unknown_terminal -> predictions with it
    versions: dict[str, int]  # model version -> predictions it scored

    @property
    def empty(self) -> bool:
        return self.rows == 0

    def __len__(self) -> int:
        return self.rows

    def main_version(self) -> str | None:
        """The version that scored most of the day (ties: the highest version string)."""
        return max(self.versions, key=lambda v: (self.versions[v], v)) if self.versions else None


def predictions_of(ctx: JobContext, day: date) -> DayPredictions:
    from pyspark.sql import functions as F

    table = ctx.settings.scoring.output_table
    if not ctx.lake.exists(table):
        return DayPredictions(0, {"unknown_customer": 0, "unknown_terminal": 0}, {})
    per_version = (
        ctx.lake.read(table).where(F.col("tx_date") == F.lit(day))
        .groupBy(F.col("model_version").cast("string").alias("model_version"))
        .agg(F.count(F.lit(1)).alias("rows"),
             *[F.sum(F.col(c).cast("long")).alias(c) for c in ("unknown_customer", "unknown_terminal")])
        .collect()  # one row per model version
    )
    return DayPredictions(
        rows=sum(int(r["rows"]) for r in per_version),
        unknown={c: sum(int(r[c] or 0) for r in per_version) for c in ("unknown_customer", "unknown_terminal")},
        versions={str(r["model_version"]): int(r["rows"]) for r in per_version},
    )


def _model_of(ctx: JobContext, predictions: DayPredictions) -> ModelRef | None:
    """The version that scored the day (the most frequent one), else the current champion."""
    from cardscore.core import registry

    version = predictions.main_version()
    if version is not None:
        try:
            return registry.get_version(ctx.settings, version)
        except StageFailed:
            log.warning("monitor.version_not_registered", version=version)
    return registry.find_alias(ctx.settings, registry.CHAMPION)


def current_frame(ctx: JobContext, day: date, predictions: DayPredictions, features: Sequence[str]) -> pd.DataFrame:
    """Day D's model features (as served to the batch scorer) with the published scores: a
    sample of at most `monitoring.current_sample_size` rows, joined in the engine."""
    cap = ctx.settings.monitoring.current_sample_size
    fraction = cap / len(predictions) if len(predictions) > cap else None
    return features_of_days(ctx, day, day, features, fraction, scores_of=ctx.settings.scoring.output_table)


def _performance(ctx: JobContext, day: date) -> list[MetricRow]:
    """Delayed-label performance of the window's scored days, computed in the engine
    (`cardscore.monitoring.performance`): the driver gets one row per scored day and version."""
    from pyspark.sql import functions as F

    from cardscore.monitoring.performance import performance_stats_spark

    cfg = ctx.settings.monitoring
    table = ctx.settings.scoring.output_table
    if not ctx.lake.exists(table):
        return []
    first = day - timedelta(days=cfg.performance_window_days)
    predictions = (
        ctx.lake.read(table)
        .where((F.col("tx_date") >= F.lit(first)) & (F.col("tx_date") <= F.lit(day)))
        .select("transaction_id", "customer_id", SCORE, "model_version", "tx_date")
    )
    if ctx.lake.exists(catalog.SILVER_LABELS):  # the frauds known on D (reported first..D)
        frauds = ctx.lake.read(catalog.SILVER_LABELS).where(
            (F.col("reported_date") >= F.lit(first)) & (F.col("reported_date") <= F.lit(day)) & F.col("is_fraud")
        ).select("transaction_id")
    else:
        frauds = ctx.spark.createDataFrame([], "transaction_id long")
    k = cfg.top_k or ctx.settings.training.protocol.top_k
    stats_table = performance_stats_spark(predictions, frauds, k)
    return performance_rows_from_stats(stats_table, day, k=k, label_delay_days=cfg.label_delay_days,
                                       thresholds=cfg.performance)


def latest_days(ctx: JobContext) -> dict[str, date | None]:
    """The latest day present in each monitored input (None: the table does not exist)."""
    from pyspark.sql import functions as F

    lake = ctx.lake

    def latest(table: str, column: str) -> date | None:
        if not lake.exists(table):
            return None
        return lake.read(table).agg(F.max(column)).collect()[0][0]

    snapshots = [latest(t, "snapshot_date") for t in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES)]
    out: dict[str, date | None] = {
        "silver_transactions": latest(catalog.SILVER_TRANSACTIONS, "tx_date"),
        "silver_labels": latest(catalog.SILVER_LABELS, "reported_date"),
        "features": min((s for s in snapshots if s is not None), default=None),
        "predictions": latest(ctx.settings.scoring.output_table, "tx_date"),
    }
    served = _materialized(ctx)
    if served is not None:  # only when the nightly ledger recorded a materialization
        out["materialized"] = served
    return out


def _materialized(ctx: JobContext) -> date | None:
    """The snapshot day the online store serves, from the ledger (a night D loads D+1; a
    standalone run of day X loads X)."""
    from pyspark.sql import functions as F

    if not ctx.lake.exists(catalog.PIPELINE_RUNS):
        return None
    served = (
        ctx.lake.read(catalog.PIPELINE_RUNS)
        .where((F.col("stage") == "materialize") & (F.col("status") == "succeeded"))
        .select(F.when(F.col("pipeline") == "nightly", F.date_add("day", 1)).otherwise(F.col("day")).alias("served"))
        .agg(F.max("served")).collect()[0][0]
    )
    return served


def stream_rows(url: str, timeout: float, dlq_rate_max: float | None) -> list[MetricRow]:
    """Counters of the stream scorer's Prometheus endpoint; unreachable: `stream_up` 0, no alert."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except Exception as exc:
        log.warning("monitor.stream_unreachable", url=url, error=f"{type(exc).__name__}: {exc}")
        return [MetricRow("stream_up", 0.0, details={"error": f"{type(exc).__name__}: {exc}"})]
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("cardscore_stream_") and sample.name.endswith("_total"):
                name = sample.name.removeprefix("cardscore_stream_").removesuffix("_total")
                arm = sample.labels.get("arm") or sample.labels.get("role")
                if name.startswith("release_") and arm:  # the release counters, per arm/role
                    name = f"{name}.{arm}"
                totals[name] = totals.get(name, 0.0) + float(sample.value)
    rows = [MetricRow("stream_up", 1.0)]
    rows += [MetricRow("stream_counter", v, k) for k, v in sorted(totals.items())]
    consumed = totals.get("messages_in", 0.0)
    if consumed:
        rows.append(MetricRow("stream_dlq_rate", totals.get("dlq_messages", 0.0) / consumed, None, dlq_rate_max,
                              details={"messages_in": consumed}))
    return rows


# ------------------------------------------------------------------------------ outputs


def _history(ctx: JobContext, day: date) -> pd.DataFrame:
    """Performance rows as last computed (on D) for the report's chart over time."""
    frame = read_rows(ctx, day, day)
    return frame[frame["metric"].isin(["average_precision", "card_precision_at_k", "auc_roc"])]


def reports_dir(settings: Any) -> Path:
    configured = settings.monitoring.reports_dir
    return Path(configured) if configured else settings.home_path / "monitoring"


def _webhook_payload(day: date, alerts: Sequence[Alert], report_path: str | None, ref: ModelRef | None) -> dict[str, Any]:
    return {
        "source": "cardscore.monitor",
        "day": day.isoformat(),
        "model_name": ref.name if ref else None,
        "model_version": ref.version if ref else None,
        "alerts": [a.to_dict() for a in alerts],
        "report": report_path,
    }


def _log_mlflow(
    settings: Any, day: date, rows: Sequence[MetricRow], alerts: Sequence[Alert], ref: ModelRef | None,
    report_path: str | None, run_id: str,
) -> str:
    """One monitoring run per day in `<experiment>-monitoring` (a rerun of D reuses it)."""
    import mlflow

    from cardscore.core import registry

    registry.configure_mlflow(settings)
    client = registry.client(settings)
    name = f"{settings.mlflow.experiment}-monitoring"
    experiment = client.get_experiment_by_name(name)
    experiment_id = (experiment.experiment_id if experiment else
                     client.create_experiment(name, artifact_location=f"{settings.mlflow_artifact_location}/monitoring"))
    found = client.search_runs([experiment_id], f"tags.`cardscore.monitor.day` = '{day.isoformat()}'", max_results=1)
    metrics: dict[str, float] = {}
    for r in rows:
        if r.value is None or r.scored_day is not None or r.metric in ("stream_counter",):
            continue
        key = f"{r.metric}.{r.subject}" if r.subject else r.metric
        metrics[_mlflow_key(key)] = float(r.value)
    metrics["alerts"] = float(len(alerts))
    with mlflow.start_run(run_id=found[0].info.run_id if found else None,
                          experiment_id=None if found else experiment_id,
                          run_name=None if found else f"monitor-{day.isoformat()}") as run:
        mlflow.set_tags({
            "cardscore.stage": STAGE,
            "cardscore.monitor.day": day.isoformat(),
            "cardscore.monitor.run_id": run_id,
            "model_name": ref.name if ref else "",
            "model_version": ref.version if ref else "",
            "model_run_id": (ref.run_id or "") if ref else "",
        })
        mlflow.log_metrics(metrics)
        if report_path:
            mlflow.log_artifact(report_path)
        mlflow.log_dict({"alerts": [a.to_dict() for a in alerts]}, "alerts.json")
        return run.info.run_id


def _mlflow_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


# ------------------------------------------------------------------------------ the stage


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--if-enabled", action="store_true",
                        help="skip when pipeline.monitoring_enabled is false (the nightly's choice)")


def run(call: StageCall) -> StageOutcome:
    """The stage: `monitor_day`. Alerts are in the outcome (exit 1 alone, 3 in the nightly),
    not a failure: the day's metrics are published. Skipped, like scoring, while there is no
    champion and nothing was scored on the day."""
    from cardscore.core import registry

    ctx, day = call.ctx, call.day
    if call.options.get("if_enabled") and not ctx.settings.pipeline.monitoring_enabled:
        return StageOutcome(status=SKIPPED, message="monitoring disabled (pipeline.monitoring_enabled)")
    if registry.find_alias(ctx.settings, registry.CHAMPION) is None and predictions_of(ctx, day).empty:
        message = "no champion and no predictions of the day: nothing to monitor yet"
        log.warning("monitor.skipped", day=day.isoformat(), reason=message)
        return StageOutcome(status=SKIPPED, message=message, details={"reason": "no_model", "alerts": []})
    return monitor_day(ctx, day, progress=call.progress).outcome()


SPEC = StageSpec(
    name=STAGE,
    description="drift, delayed-label performance, freshness, alerts",
    run=run,
    # Day X reads what is known up to X: later days' writes do not make it stale.
    inputs=(Input(catalog.PREDICTIONS, "tx_date", None, 0), Input(catalog.SILVER_TRANSACTIONS, "tx_date", None, 0),
            Input(catalog.SILVER_LABELS, "reported_date", None, 0), Input(catalog.CUSTOMER_FEATURES, "snapshot_date", None, 0),
            Input(catalog.TERMINAL_FEATURES, "snapshot_date", None, 0)),
    outputs=("ops.monitoring", "HTML report", "MLflow"),
    add_options=add_options,
    summarize=summary,
)
