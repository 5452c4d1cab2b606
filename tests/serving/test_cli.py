"""`cardscore serve` and `python -m cardscore.serving` through the real entry points."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from typer.testing import CliRunner

import cardscore.cli  # noqa: F401  (registers every command on the app)
from cardscore.cli.app import app
from cardscore.serving.openapi import COMMITTED
from tests.serving.conftest import SERVING_TEST_SETTINGS, wire
from tests.streaming import world

ROOT = Path(__file__).resolve().parents[2]
CARDSCORE = Path(sys.executable).parent / "cardscore"


def test_help_of_both_entry_points() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--reader", "--model-poll-seconds", "--openapi"):
        assert option in result.output
    assert "SIGTERM" in result.output
    module = subprocess.run([sys.executable, "-m", "cardscore.serving", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert module.returncode == 0 and "--reader" in module.stdout and "/v1/score" in module.stdout


def test_openapi_flag_prints_the_committed_document() -> None:
    module = subprocess.run([sys.executable, "-m", "cardscore.serving", "--openapi"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and module.stdout == (ROOT / COMMITTED).read_text()


def test_bad_configuration_exits_with_usage_code(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("serving:\n  max_batch: 0\n")
    module = subprocess.run([sys.executable, "-m", "cardscore.serving", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert module.returncode == 2 and "max_batch" in module.stderr


def write_config(path: Path, home: Path, **serving: object) -> Path:
    path.write_text(yaml.safe_dump({"home": str(home), "serving": {**SERVING_TEST_SETTINGS, **serving},
                                    "logging": {"format": "json"}}))
    return path


def listening_url(proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        for line in log.read_text().splitlines():
            if '"serve.listening"' in line:
                return json.loads(line)["url"]
        time.sleep(0.05)  # polling a log file for a condition
    raise AssertionError(f"no serve.listening in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.engine
def test_cardscore_serve_scores_and_stops_cleanly_on_sigterm(serving_world, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cardscore.yaml", serving_world.home)
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(CARDSCORE), "--config", str(config), "serve", "--port", "0"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        url = listening_url(proc, log)
        deadline = time.monotonic() + 120
        while requests.get(f"{url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)  # poll interval of the readiness condition
        record = world.transactions(1, seed=6, first_id=8_000)[0]
        response = requests.post(f"{url}/v1/score", json=wire(record), timeout=30)
        assert response.status_code == 200 and response.json()["transaction_id"] == 8_000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "serve.stopped" in log.read_text()


def test_a_taken_port_is_a_usage_error(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "cardscore.yaml", tmp_path / "home", port=port)
        module = subprocess.run([sys.executable, "-m", "cardscore.serving", "--config", str(config)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert module.returncode == 2 and "serve.port_unavailable" in module.stdout + module.stderr
    finally:
        taken.close()
