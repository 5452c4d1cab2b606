"""spark-submit against `cardscore engine start` (Connect) works; classic without Delta fails clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from cardscore.services.broker import free_port

pytestmark = pytest.mark.engine  # spark-submit against engines

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def env_for(home: Path, port: int) -> dict[str, str]:
    # SPARK_CONNECT_MODE_ENABLED is set process-wide by pyspark once this test process has opened
    # the embedded (Connect) session; a classic child must not inherit it.
    dropped = ("SPARK_REMOTE", "PYSPARK_GATEWAY_PORT", "SPARK_CONNECT_MODE_ENABLED")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # spark-submit needs the venv's bin
        "CARDSCORE__HOME": str(home),
        "CARDSCORE__ENGINE__SERVER_PORT": str(port),
        "PYSPARK_PYTHON": sys.executable,
    })
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "cardscore"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture
def engine_server(tmp_path: Path):
    port = free_port()
    env = env_for(tmp_path / "home", port)
    started = cli(env, "engine", "start")
    assert started.returncode == 0, started.stderr
    try:
        yield env, port
    finally:
        stopped = cli(env, "engine", "stop")
        assert stopped.returncode == 0
        assert cli(env, "engine", "status").returncode == 1


def test_spark_submit_reaches_the_engine_through_spark_remote(engine_server, tmp_path: Path) -> None:
    env, port = engine_server
    status = cli(env, "engine", "status")
    assert status.returncode == 0 and f"sc://127.0.0.1:{port}" in status.stderr

    out = (tmp_path / "smoke").as_uri()
    proc = subprocess.run(
        [str(BIN / "spark-submit"), "jobs/smoke/main.py", "--out", out],
        env={**env, "SPARK_REMOTE": f"sc://127.0.0.1:{port}"},
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "smoke ok" in proc.stdout
    table = DeltaTable(out)
    assert table.version() == 1
    assert table.to_pyarrow_table().num_rows == 110

    # The job's own --remote option works too (spark-submit's --remote flag does not reach apps).
    out2 = (tmp_path / "smoke2").as_uri()
    proc = subprocess.run(
        [sys.executable, "jobs/smoke/main.py", "--out", out2, "--remote", f"sc://127.0.0.1:{port}"],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert DeltaTable(out2).to_pyarrow_table().num_rows == 110


@pytest.mark.classic
def test_classic_spark_submit_without_delta_jars_fails_with_the_fix(tmp_path: Path) -> None:
    env = env_for(tmp_path / "home", free_port())
    proc = subprocess.run(
        [str(BIN / "spark-submit"), "--master", "local[2]", "jobs/smoke/main.py",
         "--out", (tmp_path / "never").as_uri()],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    # spark-submit forwards the Python driver's stderr to its own stdout.
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2
    assert "Delta Lake is not available in this classic Spark session" in output
    assert "--packages io.delta:delta-spark_4.2_2.13:4.4.0" in output
    assert "make jars" in output and "cardscore engine jars" in output
    assert "SPARK_REMOTE=sc://" in output
    assert not (tmp_path / "never").exists()
