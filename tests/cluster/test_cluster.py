"""The local JVM Spark cluster: `cardscore engine ... --classic` and `cardscore engine jars` as
users run them, against the session's cluster; what runs where (each worker its own executor
JVM, Python UDFs in the venv's interpreter); the failures a user meets first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cardscore.services.spark_cluster import master_json
from tests.cluster import commands
from tests.cluster.commands import CLUSTER_TIMEOUT

pytestmark = [pytest.mark.classic, pytest.mark.timeout(CLUSTER_TIMEOUT)]

DELTA_JARS = [  # the README's list
    "delta-kernel-api-4.4.0.jar",
    "delta-kernel-defaults-4.4.0.jar",
    "delta-kernel-unitycatalog-4.4.0.jar",
    "delta-spark_4.2_2.13-4.4.0.jar",
    "delta-storage-4.4.0.jar",
]


def run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=commands.REPO, capture_output=True, text=True, timeout=timeout)


def test_start_status_and_jars_as_users_run_them(classic_cluster) -> None:
    env = classic_cluster.cli_env()
    before = {s.name: s.pid for s in classic_cluster.cluster.status()}
    assert set(before) == {"master", "worker-1", "worker-2", "connect"} and all(before.values())

    started = run(commands.ENGINE_START, env)  # already running: the same cluster, nothing new
    assert started.returncode == 0, started.stderr
    state = classic_cluster.state
    assert started.stdout.split() == [state.master_url, state.connect_url]
    assert "spark-submit --master " + state.master_url in " ".join(started.stderr.split())
    assert {s.name: s.pid for s in classic_cluster.cluster.status()} == before

    status = run(commands.ENGINE_STATUS, env)
    assert status.returncode == 0, status.stderr
    assert "2/2 workers ALIVE" in status.stderr and state.connect_url in status.stderr

    jars = run(commands.ENGINE_JARS, env)
    assert jars.returncode == 0, jars.stderr
    assert sorted(Path(j).name for j in jars.stdout.strip().split(",")) == DELTA_JARS


def test_status_of_no_cluster_and_a_start_without_jars(tmp_path: Path) -> None:
    env = commands.job_env(extra={"CARDSCORE__HOME": str(tmp_path / "home"),
                                  "CARDSCORE_DELTA_JARS": str(tmp_path / "no-jars-here")})
    status = run(commands.ENGINE_STATUS, env)
    assert status.returncode == 1 and "stopped" in status.stderr
    started = run(commands.ENGINE_START, env)
    assert started.returncode == 1
    unwrapped = "".join(started.stderr.split())  # the console wraps long paths at 80 columns
    assert "makejars" in unwrapped and "no-jars-here" in unwrapped, started.stderr
    assert not list((tmp_path / "home").rglob("*.pid")), "nothing was started"


def test_each_worker_runs_an_executor_jvm_whose_python_is_the_venv(jvm_spark, classic_cluster) -> None:
    """A pandas UDF through the Connect server runs in Python workers forked by executor JVMs,
    one per worker JVM (the Connect application has one executor on each worker)."""

    def where(batches):
        import os
        import sys

        import pandas as pd
        import psutil
        import xgboost

        for _ in batches:
            pass
        executor = psutil.Process(os.getpid())
        while "CoarseGrainedExecutorBackend" not in " ".join(executor.cmdline()):
            executor = executor.parent()
        yield pd.DataFrame({"python": [sys.executable], "xgboost": [xgboost.__version__],
                            "executor": [executor.pid], "worker": [executor.ppid()]})

    found = jvm_spark.range(0, 16, 1, 8).mapInPandas(
        where, "python string, xgboost string, executor bigint, worker bigint").toPandas()
    assert set(found["python"]) == {sys.executable}
    assert found["xgboost"].nunique() == 1
    worker_pids = {s.pid for s in classic_cluster.cluster.status() if s.name.startswith("worker-")}
    assert set(found["worker"]) <= worker_pids, "executors are children of the worker JVMs"
    assert found["executor"].nunique() == found["worker"].nunique()
    # and the master sees the Connect application holding a core on each worker
    workers = master_json(classic_cluster.state.webui_url)["workers"]
    assert [w["coresused"] >= 1 for w in workers] == [True, True]


def test_a_port_in_use_is_a_clear_error_not_another_port(tmp_path: Path) -> None:
    """Spark would quietly move to the next port; the cluster must not (its state file and its
    workers would address whatever listens on the configured one)."""
    import socket

    from cardscore.core.config import load_settings
    from cardscore.services.spark_cluster import ClassicCluster, ClusterError, ClusterOptions

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = ClassicCluster(load_settings(overrides={"home": str(tmp_path / "home")}),
                                 ClusterOptions(master_port=port, webui_port=0, connect=False))
        with pytest.raises(ClusterError, match=r"master exited .*Address already in use"):
            cluster.start(timeout=120, die_with_parent=True)
    assert cluster.status() == [] and cluster.state() is None
    assert "Address already in use" in (tmp_path / "home" / "run" / "classic" / "master.log").read_text()


def test_the_connect_server_heap_is_its_own_setting_not_the_daemons(classic_cluster) -> None:
    """Spark's launcher sizes the Connect server like a daemon (SPARK_DAEMON_MEMORY, 512m for
    master and workers here) and ignores spark.driver.memory: at 16x the handbook world the
    Connect driver ran out of heap. The server gets `connect_driver_memory` (1g by default)."""
    import psutil

    from cardscore.services.spark_cluster import CONNECT_CLASS, ClusterOptions

    connect = [s for s in classic_cluster.cluster.status() if s.name == "connect"]
    assert connect and connect[0].pid, "the Connect server runs"
    server = psutil.Process(connect[0].pid)
    javas = [server, *server.children(recursive=True)]

    def cmdline(p: psutil.Process) -> list[str]:
        try:
            return p.cmdline()
        except (psutil.ZombieProcess, psutil.NoSuchProcess):  # a short-lived child that just ended
            return []

    heaps = [arg for p in javas if CONNECT_CLASS in " ".join(cmdline(p)) for arg in cmdline(p)
             if arg.startswith("-Xmx")]
    assert heaps and heaps[-1] == f"-Xmx{ClusterOptions().connect_driver_memory}", heaps
