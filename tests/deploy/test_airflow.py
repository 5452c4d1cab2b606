"""The Airflow DAGs on a real Apache Airflow 3 (its own venv, `make airflow`): they import without
errors, their tasks are the bundle's, and `airflow dags test` runs one whole night of a small
world against our code and leaves the same tables as `cardscore nightly` run on a copy of the same
world; a failing task calls the failure callback, which POSTs to the alert webhook."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from cardscore.core import catalog
from cardscore.schedule import plan
from tests.deploy import nightly_world
from tests.deploy.tools import AIRFLOW_VENV, DEPLOY, REPO, explain, missing, run

DAGS = DEPLOY / "airflow" / "dags"
PYTHON = REPO / ".venv" / "bin" / "python"


def airflow_bin() -> Path:
    path = AIRFLOW_VENV / "bin" / "airflow"
    if not path.is_file():
        missing(f"Apache Airflow not installed in {AIRFLOW_VENV}; install it with `make airflow`")
    return path


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An Airflow home with a migrated SQLite metadata database; the environment to run it."""
    airflow = airflow_bin()
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "CARDSCORE_PYTHON": str(PYTHON),
        "CARDSCORE_BUNDLE": str(REPO / "databricks.yml"),
        "PATH": f"{AIRFLOW_VENV / 'bin'}:{env.get('PATH', '')}",
    })
    migrated = run([str(airflow), "db", "migrate"], env=env, timeout=300)
    assert migrated.returncode == 0, explain(migrated)
    return env


def test_the_dags_import_without_errors(airflow_home: dict[str, str]) -> None:
    listed = run([str(airflow_bin()), "dags", "list-import-errors", "--local", "-o", "json"], env=airflow_home)
    assert listed.returncode == 0, explain(listed)
    assert json.loads(listed.stdout.strip().splitlines()[-1]) == [], explain(listed)


def test_the_dags_follow_the_bundle_and_the_retry_settings(airflow_home: dict[str, str]) -> None:
    """Loaded by Airflow's own DagBag: one task per bundle task, same order and commands;
    retries from the pipeline settings given in the Airflow processes' environment."""
    env = {**airflow_home, "CARDSCORE__PIPELINE__RETRY__MAX_ATTEMPTS": "4",
           "CARDSCORE__PIPELINE__STAGE_RETRY__SCORE__MAX_ATTEMPTS": "2",
           "CARDSCORE__PIPELINE__RETRY__BACKOFF_SECONDS": "30"}
    script = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag()
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id in bag.dag_ids:
    dag = bag.get_dag(dag_id)
    out["dags"][dag_id] = {
        "schedule": dag.timetable.summary, "max_active_runs": dag.max_active_runs,
        "deadline": [a.interval.total_seconds() for a in dag.deadline],
        "tasks": {t.task_id: {"command": t.bash_command, "upstream": sorted(t.upstream_task_ids),
                              "retries": t.retries, "delay": t.retry_delay.total_seconds(),
                              "backoff": t.retry_exponential_backoff,
                              "callback": [c.__name__ for c in (t.on_failure_callback or [])]}
                  for t in dag.tasks},
    }
print(json.dumps(out))
"""
    loaded = run([str(AIRFLOW_VENV / "bin" / "python"), "-c", script], env=env)
    assert loaded.returncode == 0, explain(loaded)
    found = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    nightly = found["dags"]["cardscore_nightly"]
    bundle_plan = plan("cardscore_nightly", REPO / "databricks.yml", python=str(PYTHON))
    assert list(nightly["tasks"]) == [t.key for t in bundle_plan.tasks]
    assert {"ingest", "features", "materialize", "score", "monitor"} <= set(nightly["tasks"])
    for task in bundle_plan.tasks:
        airflow_task = nightly["tasks"][task.key]
        assert airflow_task["upstream"] == task.depends_on
        script_path = next(a for a in task.argv if a.endswith(".py"))
        assert script_path in airflow_task["command"] and airflow_task["command"].startswith(f"exec {PYTHON} ")
        assert ("--shift-days 1" in airflow_task["command"]) == (task.key in ("features", "materialize"))
        assert airflow_task["retries"] == (1 if task.key == "score" else 3)
        # a per-stage policy replaces the default one whole (its unset fields are the defaults)
        assert airflow_task["delay"] == (5 if task.key == "score" else 30) and airflow_task["backoff"] == 2.0
        assert airflow_task["callback"] == ["on_task_failure"]
    assert nightly["schedule"] == "30 2 * * *" and nightly["max_active_runs"] == 1
    assert nightly["deadline"] == [4 * 3600]
    trigger = found["dags"]["cardscore_retraining_trigger"]["tasks"]["trigger"]
    assert "monitor trigger --date" in trigger["command"]


# ------------------------------------------------------------------------------ one night, two ways


@pytest.fixture(scope="module")
def dag_night(nightly_twins, airflow_home: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`airflow dags test` of the nightly DAG for the world's night, on the second home."""
    second = nightly_twins.for_airflow
    logical_date = (nightly_world.NIGHT + timedelta(days=1)).isoformat()  # the run after the night
    env = {**airflow_home, "CARDSCORE_CONFIG": str(second.config)}
    return run([str(airflow_bin()), "dags", "test", "cardscore_nightly", logical_date], env=env, timeout=1200)


# Airflow 3.3.2's `dags test` of a DAG with a deadline alert marks the successful run, then
# crashes clearing its deadlines (apache/airflow#73428, fix in PR #73430; the scheduler's own path
# is not affected). Until a release has the fix, a non-zero exit with exactly that error is judged
# by the task states in the metadata database, which the run had recorded before the crash.
KNOWN_DAGS_TEST_BUG = "'dict' object has no attribute 'hex'"


def assert_every_task_succeeded(result: subprocess.CompletedProcess[str], dag_id: str, env: dict[str, str],
                                tasks: list[str]) -> None:
    output = result.stdout + result.stderr
    if result.returncode != 0:
        assert KNOWN_DAGS_TEST_BUG in output and "successful" in output, explain(result)
    airflow = str(airflow_bin())
    runs = run([airflow, "dags", "list-runs", dag_id, "-o", "json"], env=env)
    assert runs.returncode == 0, explain(runs)
    run_id = json.loads(runs.stdout.strip().splitlines()[-1])[0]["run_id"]
    states = run([airflow, "tasks", "states-for-dag-run", dag_id, run_id, "-o", "json"], env=env)
    assert states.returncode == 0, explain(states)
    found = {t["task_id"]: t["state"] for t in json.loads(states.stdout.strip().splitlines()[-1])}
    assert found == dict.fromkeys(tasks, "success"), explain(result)


def frame(spark, settings, table: str, where: str, drop: tuple[str, ...], order: list[str]) -> pd.DataFrame:
    from cardscore.core.lake import Lake

    df = Lake(spark, settings).read(table).where(where).toPandas()
    return df.drop(columns=[c for c in drop if c in df.columns]).sort_values(order).reset_index(drop=True)


@pytest.mark.engine
@pytest.mark.slow
def test_airflow_runs_the_night_and_leaves_the_tables_cardscore_nightly_leaves(spark, nightly_twins, dag_night,
                                                                               airflow_home) -> None:
    first, second = nightly_twins.by_nightly, nightly_twins.for_airflow
    night = nightly_world.NIGHT
    tasks = [t.key for t in plan("cardscore_nightly", REPO / "databricks.yml", python=str(PYTHON)).tasks]
    assert_every_task_succeeded(dag_night, "cardscore_nightly", airflow_home, tasks)

    day = f"DATE'{night.isoformat()}'"
    tomorrow = f"DATE'{(night + timedelta(days=1)).isoformat()}'"
    lineage = ("load_id", "ingested_at", "source_file")  # when and from which home it was loaded
    checks = [
        (catalog.SILVER_TRANSACTIONS, f"tx_date = {day}", lineage, ["transaction_id"]),
        (catalog.SILVER_LABELS, "true", lineage, ["transaction_id"]),
        (catalog.CUSTOMER_FEATURES, f"snapshot_date = {tomorrow}", ("created_at", "run_id"), ["customer_id"]),
        (catalog.TERMINAL_FEATURES, f"snapshot_date = {tomorrow}", ("created_at", "run_id"), ["terminal_id"]),
        (first.settings.scoring.output_table, f"tx_date = {day}", ("scored_at", "run_id"), ["transaction_id"]),
    ]
    for table, where, drop, order in checks:
        by_nightly = frame(spark, first.settings, table, where, drop, order)
        by_airflow = frame(spark, second.settings, table, where, drop, order)
        assert len(by_nightly) > 0, f"{table}: nothing to compare"
        pd.testing.assert_frame_equal(by_airflow, by_nightly, check_exact=False, rtol=1e-12, obj=table)


# ------------------------------------------------------------------------------ retraining trigger, callbacks


class Webhook:
    """A local HTTP endpoint that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.mark.engine
@pytest.mark.slow
def test_the_retraining_dag_runs_the_trigger_for_the_day_that_closed(nightly_twins, dag_night, airflow_home,
                                                                     webhook) -> None:
    """On the world the DAG's night left: the trigger reads the monitoring table and decides
    (no violations there: no retraining); a successful run posts no alert."""
    env = {**airflow_home, "CARDSCORE_CONFIG": str(nightly_twins.for_airflow.config),
           "CARDSCORE_ALERT_WEBHOOK_URL": webhook.url}
    logical_date = (nightly_world.NIGHT + timedelta(days=1)).isoformat()
    result = run([str(airflow_bin()), "dags", "test", "cardscore_retraining_trigger", logical_date], env=env)
    assert_every_task_succeeded(result, "cardscore_retraining_trigger", env, ["trigger"])
    output = result.stdout + result.stderr
    assert f"--date {nightly_world.NIGHT.isoformat()}" in output or nightly_world.NIGHT.isoformat() in output
    assert "no retraining" in output, explain(result)
    assert webhook.received == []


def test_a_failed_task_calls_the_failure_callback(airflow_home, webhook, tmp_path: Path) -> None:
    """A run whose settings file does not exist: the task exits 2, fails (no retry: one attempt
    configured), and its on_failure_callback POSTs the alert to the webhook."""
    env = {**airflow_home, "CARDSCORE__PIPELINE__RETRY__MAX_ATTEMPTS": "1", "CARDSCORE_ALERT_WEBHOOK_URL": webhook.url}
    result = run([str(airflow_bin()), "dags", "test", "cardscore_retraining_trigger", "2018-04-12",
                  "-c", json.dumps({"cardscore_config": str(tmp_path / "missing.yaml")})], env=env)
    assert result.returncode != 0, explain(result)
    assert len(webhook.received) == 1, explain(result)
    alert = webhook.received[0]
    assert alert["event"] == "task_failed" and alert["dag_id"] == "cardscore_retraining_trigger"
    assert alert["task_id"] == "trigger" and "exit code 2" in alert["error"]
