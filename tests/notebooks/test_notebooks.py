"""Every notebook in notebooks/ is a Databricks source file and runs, in order, as plain Python
on one tiny simulated world: the session's embedded engine, a real Delta lake, Feast, MLflow
registry, Great Expectations and an embedded Kafka broker started by the stream notebook."""

from __future__ import annotations

import os
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardscore import notebook as nb

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
HEADER = "# Databricks notebook source\n"
SEPARATOR = "\n# COMMAND ----------\n"

# 20 days: snapshots 04-02..04-20; train 04-09..04-11, delay 04-12..13, test 04-14..16, its
# labels (at most a day late here) complete 04-17 (the windows `cardscore demo` fits to a short
# world); the last day, 04-20, is batch-scored and streamed. The gate is off: a world this
# small says nothing about model quality.
TINY: dict[str, Any] = {
    "simulator": {"n_customers": 80, "n_terminals": 160, "radius": 20.0, "seed": 4, "n_days": 20,
                  "compromised_terminals_per_day": 1, "compromised_customers_per_day": 1,
                  "label_delay_max_days": 1.0},
    "training": {"protocol": {"train_days": 3, "delay_days": 2, "test_days": 3, "top_k": 10},
                 "gate": {"min_auc_roc": 0.0, "min_average_precision": 0.0, "min_card_precision_at_k": 0.0}},
    # A short session timeout: a consumer's first assignment waits half of it on the broker.
    "kafka": {"partitions": 2, "consumer": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}},
    "streaming": {"metrics_port": 0},
    "monitoring": {"label_delay_days": 1},
}


def notebook_files() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def test_every_notebook_is_a_databricks_source_file() -> None:
    files = notebook_files()
    assert len(files) >= 2
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert text.startswith(HEADER), f"{path.name} lacks the Databricks header"
        cells = text[len(HEADER):].split(SEPARATOR)
        assert len(cells) >= 3, f"{path.name}: title, parameters and work cells"
        assert cells[0].lstrip().startswith("# MAGIC %md"), f"{path.name}: the first cell is its title"
        assert "nb.settings()" in cells[1], f"{path.name}: the second cell reads the parameters"
        compile(text, str(path), "exec")  # valid Python as it stands


def test_the_shipped_small_world_profile_loads() -> None:
    from cardscore.core.config import load_settings

    small = load_settings(NOTEBOOKS / "small_world.yaml")
    assert small.simulator.n_days < 183 and small.home_path.is_relative_to(NOTEBOOKS)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, spark) -> Iterator[Path]:
    """One tiny world's home shared by the notebooks, named through the `config` parameter."""
    home = tmp_path_factory.mktemp("notebooks") / "home"
    config = home.parent / "cardscore.yaml"
    config.write_text(yaml.safe_dump({"home": str(home), **TINY}))
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(nb.ENV_PREFIX):
                patch.delenv(name)
        patch.setenv(nb.env_name("config"), str(config))
        yield home


def run_notebook(name: str) -> dict[str, Any]:
    path = NOTEBOOKS / name
    assert path.is_file(), name
    return runpy.run_path(str(path), run_name="__main__")


@pytest.mark.slow
def test_01_explore_data(workspace: Path) -> None:
    out = run_notebook("01_explore_data.py")
    assert len(out["reports"]) == 20
    daily = out["daily"]
    assert len(daily) == 20 and daily["transactions"].min() > 0
    assert daily["frauds"].sum() > 0 and set(daily.columns) >= {"scenario_1", "scenario_2", "scenario_3"}
    reasons = {r.reason for r in out["quarantined"].collect()}
    assert reasons == {"malformed_json", "missing_field", "out_of_range", "wrong_type"}
    assert (workspace / "reports" / "notebooks" / "daily_fraud.png").stat().st_size > 10_000

    with pytest.MonkeyPatch.context() as patch:  # a rerun (of the last days, to be quick) adds nothing
        patch.setenv(nb.env_name("first_day"), "2018-04-19")
        again = run_notebook("01_explore_data.py")
    assert [r.day.isoformat() for r in again["reports"]] == ["2018-04-19", "2018-04-20"]
    assert all(f.bronze_rows_added == 0 and not f.silver_changed for r in again["reports"] for f in r.feeds.values())
    assert again["daily"].equals(daily.tail(2))


@pytest.mark.slow
def test_02_build_features(workspace: Path) -> None:
    out = run_notebook("02_build_features.py")
    assert [r.day.isoformat() for r in out["reports"]][-1] == "2018-04-20"
    assert out["online"].customer_rows > 0 and out["online"].terminal_rows > 0
    assert out["online_features"]["customer_known"].all()
    assert (workspace / "reports" / "notebooks" / "features_over_days.png").is_file()


@pytest.mark.slow
def test_03_train_and_compare(workspace: Path) -> None:
    from cardscore.core import registry
    from cardscore.core.config import load_settings

    out = run_notebook("03_train_and_compare.py")
    report = out["report"]
    assert report.protocol["train_start"] == "2018-04-09" and report.gate.passed
    settings = load_settings(os.environ[nb.env_name("config")])
    assert registry.find_alias(settings, registry.CHAMPION).version == report.version
    comparison = out["comparison"]
    assert "handbook XGBoost, published" in comparison.index and "random forest refitted, test" in comparison.index
    assert comparison.loc["handbook XGBoost, published", "AUC ROC"] == 0.862  # imported, not copied
    assert {p.name for p in out["plots"]} >= {"roc_curve.png", "pr_curve.png", "feature_importance.png"}


@pytest.mark.slow
def test_04_batch_score(workspace: Path) -> None:
    out = run_notebook("04_batch_score.py")
    report = out["report"]
    assert report.day.isoformat() == "2018-04-20" and report.rows == report.silver_rows > 0
    rows = out["predictions"].select("score", "model_version").collect()
    assert len(rows) == report.rows and {r.model_version for r in rows} == {out["report"].model_version}
    assert all(0.0 <= r.score <= 1.0 for r in rows)
    assert out["counts"]["count"].sum() == report.rows
    assert (workspace / "reports" / "notebooks" / "score_distribution.png").is_file()


@pytest.mark.slow
def test_05_stream_scorer(workspace: Path) -> None:
    out = run_notebook("05_stream_scorer.py")
    stream, skew = out["stream"], out["skew"]
    assert stream.day.isoformat() == "2018-04-20"
    assert stream.scored == stream.replayed > 0
    assert stream.dlq == 3 and sum(stream.dlq_reasons.values()) == 3  # the notebook's broken messages
    assert skew.equal and skew.compared == stream.replayed and skew.max_abs_diff < 1e-6
    from cardscore.services.broker import broker_ready

    assert out["broker"] is not None and not broker_ready(out["broker"].conf, timeout=0.5)  # stopped
    assert (workspace / "reports" / "notebooks" / "stream_vs_batch.png").is_file()


@pytest.mark.slow
def test_06_monitoring(workspace: Path) -> None:
    out = run_notebook("06_monitoring.py")
    report, metrics = out["report"], out["metrics"]
    assert report.day.isoformat() == "2018-04-20" and report.predictions > 0 and report.model_version
    assert len(metrics) == report.metrics > 0 and {"feature_psi", "freshness_lag_days"} <= set(metrics["metric"])
    assert len(out["alerts"]) == len(report.alerts) == int(metrics["violated"].sum())
    assert Path(report.report_path).is_file()
    assert (workspace / "reports" / "notebooks" / "feature_drift.html").is_file()
