"""Settings of monitoring, alerts and the retraining trigger (`jobs/monitor/main.py`).

Every threshold is a bound a metric must not cross; a crossing is an *alert* (exit code 1,
a `monitor.alert` log line, an optional webhook POST). Which alerting metrics count towards
retraining is `trigger.metrics`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cardscore.core.config.base import Section

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")
# Metric names the trigger may count (the `metric` column of ops.monitoring).
TRIGGER_METRICS = (
    "feature_psi",
    "feature_ks",
    "feature_null_rate",
    "score_psi",
    "score_ks",
    "unknown_customer_rate",
    "unknown_terminal_rate",
    "average_precision",
    "card_precision_at_k",
    "auc_roc",
    "freshness_lag_days",
    "stream_dlq_rate",
)


class DriftThresholds(Section):
    """Bounds of distribution drift against the model's reference profile."""

    feature_psi: float = Field(
        0.25, gt=0, description="population stability index of a feature, on the reference's quantile "
        "bins (0.1 slight, 0.25 significant shift: the usual reading)",
    )
    feature_ks: float = Field(
        0.2, gt=0, le=1, description="Kolmogorov-Smirnov statistic of a feature against the reference "
        "sample (the statistic, not the p-value: with thousands of rows a day every tiny shift is "
        "'significant'; the p-value is recorded in the details)",
    )
    score_psi: float = Field(0.25, gt=0, description="PSI of the day's score distribution")
    score_ks: float = Field(0.2, gt=0, le=1, description="KS statistic of the day's scores")
    feature_null_rate: float = Field(0.01, ge=0, le=1, description="share of null values of a feature")
    unknown_customer_rate: float = Field(
        0.2, ge=0, le=1, description="share of the day's predictions whose customer had no snapshot row"
    )
    unknown_terminal_rate: float = Field(
        0.2, ge=0, le=1, description="share of the day's predictions whose terminal had no snapshot row"
    )


class PerformanceThresholds(Section):
    """Lowest acceptable delayed-label performance of a scored day, checked once, on the day its
    labels become complete (D - label_delay_days)."""

    average_precision: float | None = Field(0.3, ge=0, le=1, description="None: never alert")
    card_precision_at_k: float | None = Field(0.1, ge=0, le=1, description="None: never alert")
    auc_roc: float | None = Field(0.75, ge=0, le=1, description="None: never alert")


class FreshnessThresholds(Section):
    """Highest acceptable lag in days (D minus the latest day present) of each input."""

    silver_transactions: int = Field(0, description="silver transactions of D must exist")
    silver_labels: int = Field(2, description="the label feed may be quiet for a day or two")
    features: int = Field(0, description="the gold snapshot of D must exist (scoring used it)")
    materialized: int = Field(0, description="the online store serves D+1 after the night (lag -1); "
                              "read from the nightly ledger, skipped when it has no record")
    predictions: int = Field(0, description="predictions of D must exist")


class TriggerSettings(Section):
    """The retraining trigger: retrain when a counted metric violated its threshold on at least
    `k` of the last `n` monitored days, the latest one included (default 2 of 5, like
    Databricks MLOps Stacks)."""

    enabled: bool = Field(False, description="let every monitoring run also run the trigger")
    k: int = Field(2, ge=1, description="violating days needed")
    n: int = Field(5, ge=1, description="window of days, ending at the latest")
    require_latest: bool = Field(
        True, description="fire only if the latest day itself violates (an old burst that is over "
        "does not retrain again every night)",
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["feature_psi", "score_psi", "average_precision", "card_precision_at_k"],
        description=f"metrics whose violations count; any of {list(TRIGGER_METRICS)}",
    )
    cooldown_days: int = Field(
        5, ge=1, description="after the trigger trained a version for day D it stays quiet until "
        "D + cooldown_days, so one episode retrains once and a rerun of a night never retrains "
        "twice (default: the window n, which the violations behind a retraining then leave)",
    )
    train_days: int | None = Field(
        None, ge=1, description="None: training.protocol's window, ending so that the test days' "
        "labels are complete on the trigger day",
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TRIGGER_METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {list(TRIGGER_METRICS)}")
        return value

    @model_validator(mode="after")
    def _k_within_n(self) -> TriggerSettings:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) cannot exceed n ({self.n})")
        return self


class WebhookSettings(Section):
    """Optional POST of each alerting day's alerts as JSON. Never fails the job."""

    url: str | None = Field(None, description="e.g. https://hooks.example/T/${env:CARDSCORE_WEBHOOK_TOKEN}; "
                            "secrets only through ${env:...}")
    timeout_seconds: float = Field(5.0, gt=0, le=120)
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers (values may be ${env:...})")


class MonitoringSettings(Section):
    """Settings of monitoring, alerts and the retraining trigger."""

    @field_validator("output_table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not _TABLE_NAME.match(value):
            raise ValueError("must look like 'layer.name' (letters, digits, underscores)")
        return value

    output_table: str = Field("ops.monitoring", description="logical Delta table of the metric rows")
    reference_window: Literal["test", "train"] = Field(
        "test", description="which days of the model's training run the reference profile describes "
        "(every transaction of them, from the run's lineage): the test days (scores out-of-sample, "
        "like production) or the training days (in-sample scores, and older)",
    )
    reference_sample_size: int = Field(
        5000, ge=100, description="rows of the reference kept as reference/sample.parquet (for KS)"
    )
    current_sample_size: int = Field(
        200_000, ge=100, description="at most this many rows of day D are read to the driver for KS "
        "(a uniform sample beyond it)",
    )
    quantile_bins: int = Field(10, ge=2, le=100, description="reference quantile bins per feature (PSI)")
    histogram_bins: int = Field(20, ge=5, le=200, description="bins of the per-class score histograms")
    drift_exclude: list[str] = Field(
        default_factory=lambda: ["tx_during_weekend"],
        description="features not checked for drift: a day is wholly weekend or not, so "
        "tx_during_weekend shifts by design every Saturday",
    )
    performance_window_days: int = Field(
        30, ge=1, description="scored days (before D) whose delayed-label metrics are recomputed"
    )
    label_delay_days: int = Field(
        7, ge=0, description="labels of a day are complete after this many days (delayed-label metrics, "
        "the retraining window, training's and the demo's test-week check)")
    top_k: int | None = Field(None, ge=1, description="k of card precision@k; None: training.protocol.top_k")
    drift: DriftThresholds = Field(default_factory=DriftThresholds)
    performance: PerformanceThresholds = Field(default_factory=PerformanceThresholds)
    freshness: FreshnessThresholds = Field(default_factory=FreshnessThresholds)
    stream_metrics_url: str | None = Field(
        None, description="the stream scorer's Prometheus endpoint, e.g. http://127.0.0.1:9108/metrics "
        "(None: stream health is not checked; an unreachable endpoint is recorded, never an error)",
    )
    stream_dlq_rate: float | None = Field(
        0.05, ge=0, le=1, description="highest share of consumed messages sent to the DLQ (stream)"
    )
    stream_timeout_seconds: float = Field(2.0, gt=0, le=60)
    reports_dir: str | None = Field(None, description="default <home>/monitoring; reports at <dir>/<D>/report.html")
    log_to_mlflow: bool = Field(True, description="a monitoring run per day, tagged with the model version")
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
