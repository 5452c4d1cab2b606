"""The pipeline's figures as a Prometheus text file, rewritten at the end of every stage.

One file per pipeline, `<pipeline.metrics_dir>/cardscore_<pipeline>.prom` (default
`<home>/metrics`), in the Prometheus text exposition format 0.0.4: node-exporter's textfile
collector reads it (`--collector.textfile.directory` on that folder), and a Pushgateway takes it
as it is (`curl --data-binary @cardscore_nightly.prom $PUSHGATEWAY/metrics/job/cardscore_nightly`).
It is replaced atomically (temporary file + rename), so a scraper never reads half a file.

Each stage's series carry over from earlier runs until the stage runs again: a night that
resumes at `score` still exports the `ingest` figures of the run that did it, and
`..._last_success_timestamp_seconds` survives a failed run, which is what the "missing run" and
"stale" alerts compare with `time()`. Names are documented in `HELP`, and every one is used by
deploy/prometheus/rules and the Grafana dashboard (tests/deploy checks both against a real file).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cardscore.core.config import Settings
    from cardscore.core.pipeline import StageRecord

STAGE_PREFIX = "cardscore_pipeline_stage_"
MONITORING_PREFIX = "cardscore_monitoring_"

HELP: dict[str, str] = {
    "cardscore_pipeline_run_day_timestamp_seconds": "The day (00:00 UTC) the pipeline's latest run processed",
    f"{STAGE_PREFIX}day_timestamp_seconds": "The day (00:00 UTC) the stage last ran for",
    f"{STAGE_PREFIX}last_run_timestamp_seconds": "When the stage last finished, whatever its status",
    f"{STAGE_PREFIX}last_success_timestamp_seconds": "When the stage last finished successfully (or skipped)",
    f"{STAGE_PREFIX}failed": "1 when the stage's latest run failed (after its retries)",
    f"{STAGE_PREFIX}skipped": "1 when the stage's latest run had nothing to do (e.g. no champion yet)",
    f"{STAGE_PREFIX}duration_seconds": "Seconds of the stage's latest run, retries included",
    f"{STAGE_PREFIX}attempts": "Attempts of the stage's latest run (1 without retries)",
    f"{STAGE_PREFIX}figure": "Numeric figures the stage reported (rows, quarantined lines, ...)",
    "cardscore_pipeline_model_version": "Registered model version the stage used (score, monitor)",
    f"{MONITORING_PREFIX}alerts": "Violated monitoring thresholds of the latest monitored day, by metric",
    f"{MONITORING_PREFIX}max_feature_psi": "Largest feature PSI of the latest monitored day",
    f"{MONITORING_PREFIX}score_psi": "Score PSI of the latest monitored day",
    f"{MONITORING_PREFIX}predictions": "Predictions of the latest monitored day",
}

Key = tuple[str, tuple[tuple[str, str], ...]]  # metric name, sorted labels


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float

    @property
    def key(self) -> Key:
        return self.name, tuple(sorted(self.labels.items()))


def metrics_dir(settings: Settings) -> Path:
    configured = settings.pipeline.metrics_dir
    return Path(configured) if configured else settings.home_path / "metrics"


def metrics_path(settings: Settings, pipeline: str) -> Path:
    return metrics_dir(settings) / f"cardscore_{pipeline}.prom"


def publish_stage(settings: Settings, pipeline: str, day: date, record: StageRecord) -> None:
    """`write_stage_metrics`, logging instead of raising: the file must never fail a stage."""
    from cardscore.core.logs import get_logger

    try:
        write_stage_metrics(settings, pipeline, day, record)
    except Exception as exc:
        get_logger("metrics_file").error("metrics_file.write_failed", stage=record.stage,
                                         error=f"{type(exc).__name__}: {exc}")


def write_stage_metrics(settings: Settings, pipeline: str, day: date, record: StageRecord,
                        finished: datetime | None = None) -> Path:
    """Merge one finished stage into the pipeline's file and rewrite it (atomically)."""
    path = metrics_path(settings, pipeline)
    current = {s.key: s for s in read_samples(path)}
    new = stage_samples(pipeline, day, record, finished or datetime.now(UTC))
    replaced_prefixes = _replaced_by(pipeline, record)
    for key in [k for k in current if _is_replaced(current[k], replaced_prefixes)]:
        del current[key]
    current.update({s.key: s for s in new})
    write_samples(path, current.values())
    return path


def stage_samples(pipeline: str, day: date, record: StageRecord, finished: datetime) -> list[Sample]:
    """The series one stage record stands for."""
    from cardscore.core.stage import FAILED, SKIPPED, SUCCEEDED

    stage = {"pipeline": pipeline, "stage": record.stage}
    day_ts = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    out = [
        Sample("cardscore_pipeline_run_day_timestamp_seconds", {"pipeline": pipeline}, day_ts),
        Sample(f"{STAGE_PREFIX}day_timestamp_seconds", stage, day_ts),
        Sample(f"{STAGE_PREFIX}last_run_timestamp_seconds", stage, finished.timestamp()),
        Sample(f"{STAGE_PREFIX}failed", stage, float(record.status == FAILED)),
        Sample(f"{STAGE_PREFIX}skipped", stage, float(record.status == SKIPPED)),
        Sample(f"{STAGE_PREFIX}duration_seconds", stage, float(record.seconds)),
        Sample(f"{STAGE_PREFIX}attempts", stage, float(record.attempts)),
    ]
    if record.status in (SUCCEEDED, SKIPPED):
        out.append(Sample(f"{STAGE_PREFIX}last_success_timestamp_seconds", stage, finished.timestamp()))
    outcome = record.outcome
    if outcome is None or record.status != SUCCEEDED:
        return out
    version = _number(outcome.model_version)
    if version is not None:
        out.append(Sample("cardscore_pipeline_model_version", stage, version))
    for figure, value in flatten_figures(outcome.details):
        out.append(Sample(f"{STAGE_PREFIX}figure", {**stage, "figure": figure}, value))
    if record.stage == "monitor":
        out += monitoring_samples(pipeline, outcome.details)
    return out


def monitoring_samples(pipeline: str, details: Mapping[str, Any]) -> list[Sample]:
    """Alert counts by metric, the day's largest feature PSI and the score PSI."""
    from cardscore.core.config.monitoring import TRIGGER_METRICS

    base = {"pipeline": pipeline}
    counts = dict.fromkeys(TRIGGER_METRICS, 0)  # every thresholded metric: 0 when quiet
    for alert in details.get("alerts") or []:
        counts[str(alert.get("metric"))] = counts.get(str(alert.get("metric")), 0) + 1
    out = [Sample(f"{MONITORING_PREFIX}alerts", {**base, "metric": m}, float(n)) for m, n in counts.items()]
    for name in ("max_feature_psi", "score_psi", "predictions"):
        # NaN when the day had none (drift is skipped without a reference profile): the series
        # stays known to dashboards, with a gap
        value = _number(details.get(name))
        out.append(Sample(f"{MONITORING_PREFIX}{name}", base, math.nan if value is None else value))
    return out


def flatten_figures(details: Mapping[str, Any], prefix: str = "", depth: int = 3) -> Iterator[tuple[str, float]]:
    """Numeric leaves of a stage's details (nested dicts joined with '.'; lists, text and
    booleans left out: they are in the run ledger)."""
    for key, value in details.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and depth > 1:
            yield from flatten_figures(value, f"{name}.", depth - 1)
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            yield name, float(value)


def read_samples(path: Path) -> list[Sample]:
    """The file's samples; an unreadable or foreign file is started afresh (it is only a cache
    of the ledger's latest figures)."""
    from prometheus_client.parser import text_string_to_metric_families

    if not path.exists():
        return []
    try:
        return [Sample(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(path.read_text())
                for s in family.samples if s.name in HELP]
    except (ValueError, OSError):
        return []


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client.core import GaugeMetricFamily

    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)

    class _Collector:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            for name in sorted(by_name):
                labels = sorted({k for s in by_name[name] for k in s.labels})
                family = GaugeMetricFamily(name, HELP[name], labels=labels)
                for s in sorted(by_name[name], key=lambda s: s.key):
                    family.add_metric([s.labels.get(k, "") for k in labels], s.value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def _replaced_by(pipeline: str, record: StageRecord) -> tuple[dict[str, str], bool]:
    return {"pipeline": pipeline, "stage": record.stage}, record.stage == "monitor"


def _is_replaced(sample: Sample, replaced: tuple[dict[str, str], bool]) -> bool:
    """A new record of a stage replaces all of that stage's series (figures included); a new
    monitor record also replaces the monitoring series."""
    stage, monitoring = replaced
    if all(sample.labels.get(k) == v for k, v in stage.items()):
        return sample.name != f"{STAGE_PREFIX}last_success_timestamp_seconds"
    return monitoring and sample.name.startswith(MONITORING_PREFIX) and sample.labels.get("pipeline") == stage["pipeline"]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
