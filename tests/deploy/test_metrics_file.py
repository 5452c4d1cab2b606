"""The pipeline runner's Prometheus text file: parsed by prometheus_client's parser and linted by
the real `promtool check metrics`; stage series carry over between runs, a failed run keeps the
last success; the runner writes it at the end of every stage (a real run of a tiny pipeline)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cardscore.core.config import load_settings
from cardscore.core.errors import StageFailed
from cardscore.core.metrics_file import metrics_path, write_stage_metrics
from cardscore.core.pipeline import FAILED, SKIPPED, SUCCEEDED, StageOutcome, StageRecord
from tests.deploy.tools import explain, promtool, run

DAY = date(2018, 4, 5)
T1 = datetime(2018, 4, 6, 2, 40, tzinfo=UTC)
T2 = datetime(2018, 4, 7, 2, 40, tzinfo=UTC)


def samples(path) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def settings(tmp_path):
    return load_settings(overrides={"home": str(tmp_path / "home")})


def night(settings, when: datetime, score_status: str = SUCCEEDED) -> None:
    monitor_details = {"alerts": [{"metric": "feature_psi", "subject": "amount"},
                                  {"metric": "feature_psi", "subject": "customer_mean_1d"},
                                  {"metric": "freshness_lag_days", "subject": "labels"}],
                       "max_feature_psi": 0.42, "score_psi": 0.05, "predictions": 9720, "report_path": "/x"}
    records = [
        StageRecord("ingest", SUCCEEDED, 1, 3.5, StageOutcome(details={
            "feeds": {"transactions": {"lines": 9720, "quarantined": 3}}, "ok": True, "files": ["a"]})),
        StageRecord("score", score_status, 3 if score_status == FAILED else 1, 7.25,
                    StageOutcome(model_version="4", details={"rows": 9720}) if score_status != FAILED else None,
                    "boom" if score_status == FAILED else None),
    ]
    if score_status != FAILED:
        records.append(StageRecord("monitor", SUCCEEDED, 1, 1.5, StageOutcome(model_version="4", details=monitor_details)))
    for record in records:
        write_stage_metrics(settings, "nightly", DAY, record, finished=when)


def test_the_file_parses_and_passes_promtool(settings) -> None:
    night(settings, T1)
    path = metrics_path(settings, "nightly")
    found = samples(path)

    assert value(found, "cardscore_pipeline_stage_failed", pipeline="nightly", stage="score") == 0
    assert value(found, "cardscore_pipeline_stage_duration_seconds", pipeline="nightly", stage="score") == 7.25
    assert value(found, "cardscore_pipeline_stage_last_success_timestamp_seconds",
                 pipeline="nightly", stage="ingest") == T1.timestamp()
    assert value(found, "cardscore_pipeline_run_day_timestamp_seconds", pipeline="nightly") == \
        datetime(2018, 4, 5, tzinfo=UTC).timestamp()
    assert value(found, "cardscore_pipeline_stage_figure", pipeline="nightly", stage="ingest",
                 figure="feeds.transactions.quarantined") == 3
    assert ("cardscore_pipeline_stage_figure", (("figure", "ok"), ("pipeline", "nightly"), ("stage", "ingest"))) \
        not in found, "booleans are not figures"
    assert value(found, "cardscore_pipeline_model_version", pipeline="nightly", stage="score") == 4
    assert value(found, "cardscore_monitoring_alerts", pipeline="nightly", metric="feature_psi") == 2
    assert value(found, "cardscore_monitoring_alerts", pipeline="nightly", metric="freshness_lag_days") == 1
    assert value(found, "cardscore_monitoring_alerts", pipeline="nightly", metric="score_psi") == 0, "quiet metrics are 0"
    assert value(found, "cardscore_monitoring_max_feature_psi", pipeline="nightly") == 0.42

    checked = run([promtool(), "check", "metrics"], input=path.read_text())
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), explain(checked)


def test_a_failed_run_keeps_the_last_success_and_replaces_the_stage_figures(settings) -> None:
    night(settings, T1)
    night(settings, T2, score_status=FAILED)
    found = samples(metrics_path(settings, "nightly"))

    assert value(found, "cardscore_pipeline_stage_failed", pipeline="nightly", stage="score") == 1
    assert value(found, "cardscore_pipeline_stage_attempts", pipeline="nightly", stage="score") == 3
    assert value(found, "cardscore_pipeline_stage_last_run_timestamp_seconds",
                 pipeline="nightly", stage="score") == T2.timestamp()
    assert value(found, "cardscore_pipeline_stage_last_success_timestamp_seconds",
                 pipeline="nightly", stage="score") == T1.timestamp(), "the failed run keeps the last success"
    assert value(found, "cardscore_pipeline_stage_last_success_timestamp_seconds",
                 pipeline="nightly", stage="ingest") == T2.timestamp()
    assert not [k for k in found if k[0] == "cardscore_pipeline_model_version" and ("stage", "score") in k[1]], \
        "a failed stage's figures are gone, not stale"
    assert value(found, "cardscore_pipeline_stage_failed", pipeline="nightly", stage="monitor") == 0, \
        "a stage that did not run this time keeps its last series"


def test_monitoring_without_drift_exports_nan_psi(settings) -> None:
    details = {"alerts": [], "max_feature_psi": None, "score_psi": None, "predictions": 12}
    write_stage_metrics(settings, "nightly", DAY, StageRecord("monitor", SUCCEEDED, 1, 1.0, StageOutcome(details=details)))
    found = samples(metrics_path(settings, "nightly"))
    assert math.isnan(value(found, "cardscore_monitoring_score_psi", pipeline="nightly"))
    assert value(found, "cardscore_monitoring_predictions", pipeline="nightly") == 12


def test_a_foreign_or_broken_file_is_replaced(settings) -> None:
    path = metrics_path(settings, "nightly")
    path.parent.mkdir(parents=True)
    path.write_text("this is { not prometheus\n")
    write_stage_metrics(settings, "nightly", DAY, StageRecord("ingest", SKIPPED, 1, 0.1, StageOutcome(status=SKIPPED)))
    found = samples(path)
    assert value(found, "cardscore_pipeline_stage_skipped", pipeline="nightly", stage="ingest") == 1


@pytest.mark.engine
def test_the_runner_writes_the_file_after_every_stage(spark, settings) -> None:
    """A real StageRunner (real ledger on the engine) with two small stages, the second failing
    its gate: the file then holds both, the failed one flagged, written by the runner itself."""
    from cardscore.core.pipeline import StageRunner
    from cardscore.core.stage import StageSpec, job_context

    seen_after_first: list[bool] = []
    path = metrics_path(settings, "ops-test")

    def first(call):
        return StageOutcome(details={"rows": 12})

    def second(call):
        seen_after_first.append(path.exists())
        raise StageFailed("second", "gate check_rows failed")

    ctx = job_context(settings, spark)
    result = StageRunner(ctx, [StageSpec("first", "", first), StageSpec("second", "", second)], "ops-test").run_day(DAY)

    assert result.failed is not None and seen_after_first == [True]
    found = samples(path)
    assert value(found, "cardscore_pipeline_stage_figure", pipeline="ops-test", stage="first", figure="rows") == 12
    assert value(found, "cardscore_pipeline_stage_failed", pipeline="ops-test", stage="second") == 1
