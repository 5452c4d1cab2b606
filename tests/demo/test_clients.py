"""Third-party clients on the demo's workspace, each run as the README writes it (its bash
blocks, read from README.md; only ports are swapped for free ones): Feast's CLI and UI from
features/, and MLflow's model server answering like the batch scorer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from deltalake import DeltaTable

from cardscore.services.broker import free_port
from tests.demo.world import LAST_DAY, DemoRun
from tests.support.browser import render
from tests.support.readme import REPO, bash_block

pytestmark = pytest.mark.engine  # the demo's workspace, an engine, servers


def bash(script: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{script}"], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


@contextmanager
def server(script: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A README command that serves until stopped, in its own process group (it execs or forks
    children), stopped with SIGTERM then SIGKILL."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", f"set -euo pipefail\n{script}"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=REPO, start_new_session=True)
    try:
        yield proc
    finally:
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue


def wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> None:
    """Until `url` answers 200 (the server is up), the process died, or the time is over."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f}s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)  # polling a server that is starting: the condition is checked above


# ------------------------------------------------------------------------------ Feast


def test_feast_plan_and_apply_from_features_with_the_exported_settings(demo_run: DemoRun) -> None:
    """The settings `cardscore features env` exports are all Feast needs: the workspace's lake
    (not one under features/), its registry and online store, and the running engine."""
    env = demo_run.env(CARDSCORE__ENGINE__SERVER_PORT=str(free_port()))
    block = bash_block("feast plan && feast apply")
    try:
        done = bash(block, env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        stopped = bash("cardscore engine stop", env, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
    assert "customer_features" in done.stdout and "terminal_features" in done.stdout
    exported = bash('eval "$(cardscore features env)"; env', env, timeout=120).stdout
    assert f"CARDSCORE_FEAST_LAKE_ROOT={(demo_run.workspace / 'lake').as_uri()}" in exported
    assert f"CARDSCORE_CONFIG={demo_run.profile}" in exported
    assert "SPARK_REMOTE=" not in exported  # the engine is stopped: the exports say to start one


def test_feast_names_the_lake_path_it_cannot_read(demo_run: DemoRun, tmp_path: Path) -> None:
    elsewhere = tmp_path / "no-lake-here"
    script = f'eval "$(cardscore features env)"\nexport CARDSCORE_FEAST_LAKE_ROOT={elsewhere}\ncd features && feast plan'
    done = bash(script, demo_run.env())
    assert done.returncode != 0
    assert f"is not a Delta table at {elsewhere.as_uri()}/gold/customer_features" in done.stderr, done.stderr[-3000:]
    assert "No commit files found" not in done.stderr  # Sail's error no longer hides the cause


def test_feast_ui_shows_the_workspace_feature_views(demo_run: DemoRun, tmp_path: Path) -> None:
    """`feast ui` starts (its gRPC health and reflection modules are installed) and the page,
    rendered in Chromium, lists the registry's feature views."""
    port = free_port()
    block = bash_block("feast -c features ui").replace("--port 8888", f"--port {port}")
    log = tmp_path / "feast-ui.log"
    with server(block, demo_run.env(), log) as proc:
        wait_for_http(f"http://127.0.0.1:{port}/", proc, log)
        page = render(f"http://127.0.0.1:{port}/p/cardscore/feature-view", tmp_path, "feast-ui", wait_ms=15000)
    assert "customer_features" in page.text and "terminal_features" in page.text, page.text[:2000]
    assert "grpc_health" not in log.read_text()


# ------------------------------------------------------------------------------ MLflow


def one_scored_transaction(workspace: Path) -> tuple[list[str], list[float], float]:
    """A transaction of the last day that the batch scorer scored with known customer and
    terminal: its model input (assembled here from silver and the day's gold snapshots, the
    features' definitions) and its batch score."""
    from cardscore.features.definitions import CUSTOMER_FEATURES, MODEL_FEATURES, TERMINAL_FEATURES
    from cardscore.features.request_time import request_time_record

    lake = workspace / "lake"
    predictions = DeltaTable(str(lake / "gold" / "predictions")).to_pandas()
    scored = predictions[(predictions["tx_date"] == LAST_DAY) & ~predictions["unknown_customer"]
                         & ~predictions["unknown_terminal"]].sort_values("transaction_id")
    assert len(scored), "the demo scored its last day"
    row = scored.iloc[0]
    silver = DeltaTable(str(lake / "silver" / "transactions")).to_pandas()
    tx = silver[silver["transaction_id"] == row["transaction_id"]].iloc[0]
    values: dict[str, float] = dict(request_time_record(float(tx["amount"]), tx["event_time"].to_pydatetime()))
    for table, key, names in (("customer_features", "customer_id", CUSTOMER_FEATURES),
                              ("terminal_features", "terminal_id", TERMINAL_FEATURES)):
        snapshot = DeltaTable(str(lake / "gold" / table)).to_pandas()
        entity = snapshot[(snapshot[key] == row[key]) & (snapshot["snapshot_date"] == LAST_DAY)]
        assert len(entity) == 1, (table, row[key])
        values.update({name: float(entity.iloc[0][name]) for name in names})
    return list(MODEL_FEATURES), [values[name] for name in MODEL_FEATURES], float(row["score"])


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def test_mlflow_serves_the_champion_like_the_batch_scorer(demo_run: DemoRun, tmp_path: Path) -> None:
    """`mlflow models serve` of the champion (--env-manager local) answers the logged input
    example, and one real transaction's features get exactly its batch score."""
    port = free_port()
    serve = bash_block("mlflow models serve").replace("--port 5001", f"--port {port}")
    ask = (bash_block("serving_input_example.json").replace("127.0.0.1:5001", f"127.0.0.1:{port}")
           .replace("/tmp/champion", str(tmp_path / "champion")))
    log = tmp_path / "mlflow-serve.log"
    columns, features, batch_score = one_scored_transaction(demo_run.workspace)
    with server(serve, demo_run.env(), log) as proc:
        wait_for_http(f"http://127.0.0.1:{port}/ping", proc, log)
        example = bash(ask, demo_run.env(), timeout=180)
        assert example.returncode == 0, example.stderr[-3000:]
        answer = json.loads(example.stdout.strip().splitlines()[-1])
        served = post_json(f"http://127.0.0.1:{port}/invocations",
                           {"dataframe_split": {"columns": columns, "data": [features]}})
    assert len(answer["predictions"]) == 1 and 0.0 <= answer["predictions"][0] <= 1.0
    assert len(served["predictions"]) == 1
    assert abs(served["predictions"][0] - batch_score) < 1e-6, (served, batch_score)
