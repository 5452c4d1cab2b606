"""Session fixtures of the JVM Spark tests, each started lazily, at most once per run:

* `classic_cluster`: the local standalone cluster (master, two workers) and its Spark Connect
  server with Delta, on free ports, its processes tied to this pytest process (they get
  SIGTERM if it dies); stopped at the end through `cardscore engine stop --classic`.
* `jvm_spark`: a Spark Connect session to that server, in this process, beside the embedded
  Sail session (`spark`), which it must not replace as pyspark's default session.
* `engine_world` / `engine_runs`: the tiny world's base built once on Sail, then `train`,
  `promote` and the nightly of one day on (a) Sail, (b) the cluster through spark-submit and
  (c) the JVM Connect server (its nightly; its model is trained on Sail), each in its own copy
  of the base, the three at the same time,
  in the background: when the run includes a test that needs them, they start before the
  first test of this folder, and the quicker JVM tests run meanwhile.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from cardscore.core.config import Settings, load_settings
from tests.cluster import commands, world

ENGINES = ("sail", "submit", "connect")


@dataclass
class RunningCluster:
    home: Path
    settings: Settings
    cluster: object  # cardscore.services.spark_cluster.ClassicCluster
    state: object  # ClusterState

    def submit_args(self) -> list[str]:
        return self.cluster.submit_args(self.state)

    def cli_env(self) -> dict[str, str]:
        """The environment in which `cardscore engine ... --classic` addresses this cluster
        (its home, and its ports for a `start`)."""
        ports = [url.rsplit(":", 1)[1] for url in (self.state.master_url, self.state.webui_url,
                                                     self.state.connect_url)]
        return commands.job_env(extra={"CARDSCORE__HOME": str(self.home),
                                       **dict(zip(commands.PORT_ENV, ports, strict=True))})


@pytest.fixture(scope="session")
def classic_cluster(tmp_path_factory: pytest.TempPathFactory):
    from cardscore.services.spark_cluster import (
        ClassicCluster,
        ClusterError,
        ClusterOptions,
        delta_jars,
    )

    try:
        delta_jars()
    except ClusterError as exc:
        pytest.fail(str(exc))
    home = tmp_path_factory.mktemp("classic-cluster") / "home"
    settings = load_settings(overrides={"home": str(home)})
    cluster = ClassicCluster(settings, ClusterOptions(master_port=0, webui_port=0, connect_port=0))
    state = cluster.start(timeout=300, die_with_parent=True)
    running = RunningCluster(home, settings, cluster, state)
    pids = [s.pid for s in cluster.status()]
    try:
        yield running
    finally:
        stopped = subprocess.run(commands.ENGINE_STOP, env=running.cli_env(), cwd=commands.REPO,
                                 capture_output=True, text=True, timeout=120)
        cluster.stop()  # a no-op when the CLI stopped everything
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not [p for p in pids if p and psutil.pid_exists(p)
                    and psutil.Process(p).status() != psutil.STATUS_ZOMBIE], "cluster processes left behind"


@pytest.fixture(scope="session")
def jvm_spark(classic_cluster: RunningCluster):
    """A Spark Connect session to the cluster's JVM Connect server (UTC, like every job's)."""
    from pyspark.sql.connect.session import SparkSession

    # create() makes the process's first Connect session its default and active one, which
    # getOrCreate() then returns whatever URL it is asked for: keep the embedded engine's role.
    default, active = SparkSession._default_session, getattr(SparkSession._active_session, "session", None)
    session = (SparkSession.builder.remote(classic_cluster.state.connect_url)
               .config("spark.sql.session.timeZone", "UTC").create())
    SparkSession._default_session, SparkSession._active_session.session = default, active
    yield session
    session.stop()


@pytest.fixture(scope="session")
def engine_world(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base home: landing days, ingested history and snapshots, built on Sail."""
    home = tmp_path_factory.mktemp("engine-world") / "base"
    world.build_base(spark, home)
    return home


@dataclass
class EngineRun:
    engine: str
    home: Path
    config: Path
    results: dict[str, commands.StepResult]

    def settings(self) -> Settings:
        return load_settings(self.config)


@dataclass
class PendingRuns:
    root: Path
    configs: dict[str, Path]
    futures: dict[str, Future]

    def result(self) -> dict[str, EngineRun]:
        results = {engine: future.result() for engine, future in self.futures.items()}
        # step seconds, for whoever wonders where the time went (--basetemp keeps it)
        (self.root / "steps.json").write_text(json.dumps(
            {engine: {r.name: round(r.seconds, 1) for r in results[engine]} for engine in ENGINES}, indent=1))
        return {
            engine: EngineRun(engine, self.configs[engine].parent, self.configs[engine],
                              {r.name: r for r in results[engine]})
            for engine in ENGINES
        }


@pytest.fixture(scope="session")
def engine_runs_started(engine_world: Path, classic_cluster: RunningCluster,
                        tmp_path_factory: pytest.TempPathFactory):
    """train, promote, nightly of `world.TINY.night` on each engine, started in the background."""
    root = tmp_path_factory.mktemp("engine-runs")
    size = world.TINY
    configs = {engine: world.clone_base(engine_world, root / engine) for engine in ENGINES}
    steps = {
        "sail": commands.sail_steps(configs["sail"], size.night, world.TRAIN_START),
        "submit": commands.spark_submit_steps(classic_cluster.submit_args(), configs["submit"], size.night,
                                              world.TRAIN_START),
        "connect": commands.connect_steps(classic_cluster.state.connect_url, configs["connect"], size.night,
                                          world.TRAIN_START),
    }
    pool = ThreadPoolExecutor(len(ENGINES), thread_name_prefix="engine-run")
    futures = {engine: pool.submit(commands.run_steps, steps[engine]) for engine in ENGINES}
    try:
        yield PendingRuns(root, configs, futures)
    finally:
        commands.kill_running()  # a run stopped early (-x, Ctrl-C) leaves nothing behind
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def engine_runs(engine_runs_started: PendingRuns) -> dict[str, EngineRun]:
    return engine_runs_started.result()


@pytest.fixture(scope="session", autouse=True)
def _start_engine_runs_early(request: pytest.FixtureRequest) -> None:
    """Start the engine runs at the first test of this folder when a test of the run needs them."""
    if any("engine_runs" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("engine_runs_started")
