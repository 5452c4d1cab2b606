"""A local JVM Spark cluster for `cardscore engine start --classic`: a standalone master, N
workers (each launching its own executor JVMs) and a Spark Connect server with Delta, all from
the pinned pyspark's own jars and `spark-class` / `spark-submit` scripts.

    cluster = ClassicCluster(settings, ClusterOptions())
    cluster.start()                    # master, workers (waits until all are ALIVE), Connect
    cluster.submit_args()              # spark-submit options that reach it with Delta
    cluster.status(); cluster.stop()

Jobs reach it two ways: `spark-submit --master spark://... --jars <delta jars> --conf <delta
conf> jobs/x/main.py` (a classic driver whose executors run on the workers), or
`SPARK_REMOTE=sc://... spark-submit jobs/x/main.py` through the Connect server, itself an
application of the cluster. Both run Python UDFs in executors with this venv's interpreter.

Workers advertise `worker_cores` task slots each (2 by default) so that the Connect server (one
1-core executor per worker) and a submitted job can run side by side: the slots are Spark's
bookkeeping, the JVMs share the machine's cores. Pid and log files, and `classic.json` (the
addresses), live under `<home>/run/classic`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from cardscore.core.config import Settings
from cardscore.core.engine import DELTA_CONF, DELTA_JARS_ENV, delta_jar_folder, local_delta_jars
from cardscore.services.process import (
    ManagedService,
    ServiceError,
    ServiceStatus,
    dying_with_parent,
    wait_until,
)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
STATE_FILE = "classic.json"
# Spark's defaults (1 GiB heap per daemon) are far more than a master or worker daemon needs.
DAEMON_MEMORY = "512m"
# JIT and GC for many short jobs on few cores: C1 only, one GC thread. Measured on the tiny
# nightly through spark-submit on 2 busy cores: 537 s with the JVM defaults, 277 s with these.
QUICK_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


class ClusterError(ServiceError):
    """The local cluster could not start, or something it needs (Java, the jars) is missing."""


@dataclass(frozen=True)
class ClusterOptions:
    """Sizes and ports of the local cluster. Port 0 means a free port chosen at start."""

    workers: int = 2
    worker_cores: int = 2
    worker_memory: str = "2g"
    executor_memory: str = "1g"
    master_port: int = 7077
    webui_port: int = 8080
    connect_port: int = 15003  # 15002 is `cardscore engine start` (Sail)
    connect: bool = True
    jvm_options: str = QUICK_JVM_OPTIONS
    connect_driver_memory: str = "1g"  # the Connect server is the driver of every Connect job


@dataclass
class ClusterState:
    """What `start` wrote to `classic.json`: where everything listens."""

    host: str
    master_url: str
    webui_url: str
    connect_url: str | None
    workers: int
    executor_memory: str
    jars: list[str] = field(default_factory=list)
    jvm_options: str = ""


def spark_home() -> Path:
    """The pinned pyspark's folder: its `jars/` and `bin/spark-class` are a Spark distribution."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def delta_jars(folder: Path | None = None) -> list[Path]:
    """The Delta jars for JVM Spark (`make jars`), sorted; ClusterError if there are none."""
    folder = folder or delta_jar_folder()
    jars = local_delta_jars(folder)
    if not jars:
        raise ClusterError(
            f"no Delta jars in {folder}: run `make jars` (Maven Central, deploy/jvm/delta/pom.xml), "
            f"or point ${DELTA_JARS_ENV} at a folder holding delta-spark_<spark>_2.13 and delta-storage"
        )
    return jars


def delta_conf_args() -> list[str]:
    """`--conf` pairs that turn Delta on in a classic session (extensions and catalog)."""
    args: list[str] = []
    for key, value in DELTA_CONF.items():
        args += ["--conf", f"{key}={value}"]
    return args


def small_data_conf_args(workers: int) -> list[str]:
    """Partition counts sized for a local cluster, not Spark's defaults for big clusters: 200
    shuffle partitions and 50 partitions for every Delta log replay turn each tiny step into
    hundreds of tasks (measured on the tiny nightly: ingest 350 s with the defaults)."""
    return ["--conf", f"spark.sql.shuffle.partitions={4 * workers}",
            "--conf", f"spark.databricks.delta.snapshotPartitions={workers}"]


def master_json(webui_url: str, timeout: float = 2.0) -> dict | None:
    """The master's state (`/json/`): workers with their state, apps, status; None if unreachable."""
    try:
        with urllib.request.urlopen(f"{webui_url}/json/", timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def alive_workers(webui_url: str) -> list[dict]:
    state = master_json(webui_url) or {}
    return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]


class JvmProcess(ManagedService):
    """A ManagedService that runs in its own folder and can be tied to the starting process."""

    def __init__(self, *args, cwd: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cwd = cwd

    def launch(self, die_with_parent: bool = False) -> subprocess.Popen:
        """Start the process (no readiness wait); refuse if this service already runs."""
        if self.pid() is not None:
            raise ClusterError(f"{self.name} already runs (pid {self.pid()}); stop it first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                dying_with_parent(self.argv) if die_with_parent else self.argv,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.cwd, start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def stop(self, grace: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after `grace` seconds; False if it was not running. A process
        that exited but is not yet reaped (a zombie of the process that started it) counts as
        stopped: another process (the CLI) cannot wait for it."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            if not _exits(proc, grace):
                proc.kill()
                _exits(proc, grace)
        except psutil.NoSuchProcess:
            pass
        self.pid_file.unlink(missing_ok=True)
        return True

    def check_alive(self, proc: subprocess.Popen) -> None:
        if proc.poll() is not None:
            self.pid_file.unlink(missing_ok=True)
            cause = self.last_error()
            raise ClusterError(f"{self.name} exited with code {proc.returncode} during start"
                               f"{': ' + cause if cause else ''}; see {self.log_file}")

    def last_error(self) -> str:
        """The last exception line of the log (e.g. a port in use), cut to 300 characters."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-200:]
        except OSError:
            return ""
        found = [line for line in lines if "Exception" in line or "Error" in line]
        return found[-1].strip()[:300] if found else ""


class ClassicCluster:
    """Master, workers and Connect server of one cardscore home (`<home>/run/classic`)."""

    def __init__(self, settings: Settings, options: ClusterOptions | None = None) -> None:
        self.settings = settings
        self.options = options or ClusterOptions()
        self.host = settings.engine.host
        self.folder = settings.run_dir / "classic"
        self.state_file = self.folder / STATE_FILE
        self._children: list[subprocess.Popen] = []  # started by this object: reaped on stop

    # ------------------------------------------------------------------ state

    def state(self) -> ClusterState | None:
        try:
            return ClusterState(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def _services(self, state: ClusterState | None) -> list[JvmProcess]:
        """The processes of this home's cluster: from the state file, or from the pid files
        left by a cluster that failed half-way through its start."""
        if state is not None:
            workers = [f"worker-{i}" for i in range(1, state.workers + 1)]
        else:
            workers = sorted(p.stem for p in self.folder.glob("worker-*.pid"))
        markers = {"master": MASTER_CLASS, "connect": CONNECT_CLASS}
        return [
            JvmProcess(name, [], self.folder, address="", ready=lambda: True,
                       marker=markers.get(name, WORKER_CLASS), cwd=self.folder / name)
            for name in ["master", *workers, "connect"]
        ]

    def status(self) -> list[ServiceStatus]:
        """One status per process of the cluster (empty when none was started)."""
        state = self.state()
        out = []
        for service in self._services(state):
            status = service.status()
            expected = state is not None and (service.name != "connect" or state.connect_url)
            if not (status.running or expected):
                continue
            address = ""
            if state is not None:
                address = {"master": state.master_url, "connect": state.connect_url or ""}.get(service.name, "")
            out.append(ServiceStatus(service.name, status.running, status.pid, address, service.log_file))
        return out

    def running(self) -> bool:
        statuses = self.status()
        return bool(statuses) and all(s.running for s in statuses)

    def describe(self) -> str:
        state = self.state()
        lines = [s.describe() for s in self.status()]
        if state is not None:
            alive = len(alive_workers(state.webui_url))
            lines.append(f"master UI {state.webui_url}: {alive}/{state.workers} workers ALIVE")
        return "\n".join(lines) if lines else "classic cluster: stopped"

    # ------------------------------------------------------------------ start / stop

    def start(self, timeout: float = 180.0, die_with_parent: bool = False) -> ClusterState:
        """Start master, workers and (by default) the Connect server; return once the master
        reports every worker ALIVE and the Connect server listens. If this home's cluster
        already runs, return its state. `die_with_parent`: the processes get SIGTERM when the
        calling process exits (tests), instead of outliving it (the CLI)."""
        from cardscore.services.broker import free_port
        from cardscore.services.engine_server import port_open

        current = self.state()
        if current is not None and self.running():
            return current
        self.stop()  # leftovers of a half-started or crashed cluster
        jars = delta_jars()
        _check_java()
        opts = self.options
        host = self.host

        def port(value: int) -> int:
            return value or free_port(host)

        master_port, webui_port = port(opts.master_port), port(opts.webui_port)
        state = ClusterState(
            host=host,
            master_url=f"spark://{host}:{master_port}",
            webui_url=f"http://{host}:{webui_port}",
            connect_url=f"sc://{host}:{port(opts.connect_port)}" if opts.connect else None,
            workers=opts.workers,
            executor_memory=opts.executor_memory,
            jars=[str(j) for j in jars],
            jvm_options=opts.jvm_options,
        )
        deadline = time.monotonic() + timeout

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
        try:
            master = self._master(state, master_port, webui_port)
            master_proc = master.launch(die_with_parent)
            self._children.append(master_proc)
            _wait_for(lambda: (master_json(state.webui_url) or {}).get("status") == "ALIVE",
                      [(master, master_proc)], remaining(), "the master to be ALIVE")
            workers = [self._worker(state, i, port(0)) for i in range(1, opts.workers + 1)]
            launched = [(w, w.launch(die_with_parent)) for w in workers]
            self._children += [proc for _, proc in launched]
            _wait_for(lambda: len(alive_workers(state.webui_url)) >= opts.workers,
                      [(master, master_proc), *launched], remaining(),
                      f"{opts.workers} workers ALIVE at {state.webui_url}")
            if state.connect_url:
                connect = self._connect(state, jars)
                connect_proc = connect.launch(die_with_parent)
                self._children.append(connect_proc)
                connect_port = int(state.connect_url.rsplit(":", 1)[1])
                _wait_for(lambda: port_open(host, connect_port),
                          [(connect, connect_proc), (master, master_proc)], remaining(),
                          f"the Spark Connect server on {state.connect_url}")
        except BaseException:
            self.stop()
            raise
        return state

    def stop(self, grace: float = 10.0) -> bool:
        """Stop the Connect server, the workers (their executors exit with them), then the
        master. False if nothing was running."""
        state = self.state()
        stopped = False
        for service in reversed(self._services(state)):  # connect, workers, master
            stopped = service.stop(grace) or stopped
        self.state_file.unlink(missing_ok=True)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=grace)
        self._children.clear()
        return stopped

    # ------------------------------------------------------------------ components

    def _env(self) -> dict[str, str]:
        home = spark_home()
        return {
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": self.host,  # web UIs and RPC bind to this address, not 0.0.0.0
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            # maxRetries 0: a port in use is an error, not a silent move to the next port (the
            # state file, and the workers, would address someone else's master).
            "SPARK_DAEMON_JAVA_OPTS": f"{self.options.jvm_options} -Dspark.port.maxRetries=0".strip(),
            "SPARK_LOCAL_DIRS": str(self.folder / "scratch"),  # shuffle and block files, not /tmp
            "PYSPARK_PYTHON": sys.executable,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def _spark_class(self, *args: str) -> list[str]:
        return [str(spark_home() / "bin" / "spark-class"), *args]

    def _master(self, state: ClusterState, port: int, webui_port: int) -> JvmProcess:
        env = {**self._env(), "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
        argv = self._spark_class(MASTER_CLASS, "--host", state.host, "--port", str(port),
                                 "--webui-port", str(webui_port))
        return JvmProcess("master", argv, self.folder, state.master_url, lambda: True, MASTER_CLASS,
                          env=env, cwd=self.folder / "master")

    def _worker(self, state: ClusterState, index: int, port: int) -> JvmProcess:
        work_dir = self.folder / f"worker-{index}"
        env = {**self._env(), "SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=true"}
        argv = self._spark_class(
            WORKER_CLASS, "--host", state.host, "--port", str(port), "--webui-port", "0",
            "--cores", str(self.options.worker_cores), "--memory", self.options.worker_memory,
            "--work-dir", str(work_dir / "work"), state.master_url,
        )
        return JvmProcess(f"worker-{index}", argv, self.folder, f"{state.host}:{port}", lambda: True,
                          WORKER_CLASS, env=env, cwd=work_dir)

    def _connect(self, state: ClusterState, jars: Sequence[Path]) -> JvmProcess:
        assert state.connect_url is not None
        port = state.connect_url.rsplit(":", 1)[1]
        argv = [
            str(spark_home() / "bin" / "spark-submit"), "--class", CONNECT_CLASS,
            "--name", "cardscore-connect", *self.submit_args(state, cores=state.workers),
            "--conf", f"spark.connect.grpc.binding.address={state.host}",
            "--conf", f"spark.connect.grpc.binding.port={port}",
            "--conf", "spark.executor.cores=1",
            "--conf", f"spark.sql.warehouse.dir={self.folder / 'connect' / 'warehouse'}",
        ]
        # Spark's launcher sizes the Connect server like a daemon (as the Thrift server): its heap
        # is SPARK_DAEMON_MEMORY, and --driver-memory / spark.driver.memory are ignored. It is the
        # driver of every Connect job, so it gets its own size, not the daemons' 512m.
        env = {**self._env(), "SPARK_DAEMON_MEMORY": self.options.connect_driver_memory}
        return JvmProcess("connect", argv, self.folder, state.connect_url, lambda: True, CONNECT_CLASS,
                          env=env, cwd=self.folder / "connect")

    def submit_args(self, state: ClusterState | None = None, cores: int | None = None) -> list[str]:
        """spark-submit options for a job on this cluster (the README's command): the master, the
        Delta jars and conf, the venv's Python for driver and executors, then what suits a small
        local cluster (partition counts, quick JIT, no driver UI)."""
        state = state or self.state()
        if state is None:
            raise ClusterError("the classic cluster is not running: cardscore engine start --classic")
        args = ["--master", state.master_url, "--jars", ",".join(state.jars), *delta_conf_args(),
                "--conf", f"spark.pyspark.python={sys.executable}", *small_data_conf_args(state.workers)]
        if state.jvm_options:
            args += ["--conf", f"spark.driver.extraJavaOptions={state.jvm_options}",
                     "--conf", f"spark.executor.extraJavaOptions={state.jvm_options}"]
        args += ["--conf", "spark.ui.enabled=false"]
        if state.executor_memory != ClusterOptions.executor_memory:
            args += ["--conf", f"spark.executor.memory={state.executor_memory}"]
        if cores:
            args += ["--conf", f"spark.cores.max={cores}"]
        return args


def _exits(proc: psutil.Process, timeout: float) -> bool:
    def gone() -> bool:
        try:
            return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    try:
        wait_until(gone, timeout, interval=0.1, what=f"pid {proc.pid} to exit")
    except TimeoutError:
        return False
    return True


def _check_java() -> None:
    from shutil import which

    if not (os.environ.get("JAVA_HOME") or which("java")):
        raise ClusterError("java not found: install a Java 17 JDK (Debian: apt-get install openjdk-17-jdk-headless)")


def _wait_for(condition, processes: Sequence[tuple[JvmProcess, subprocess.Popen]], timeout: float,
              what: str) -> None:
    """Wait for `condition`, failing at once (with the log's name) if a process exits."""

    def check() -> bool:
        for service, proc in processes:
            service.check_alive(proc)
        return condition()

    try:
        wait_until(check, timeout, interval=0.2, what=what)
    except TimeoutError as exc:
        logs = ", ".join(str(s.log_file) for s, _ in processes)
        raise ClusterError(f"{exc}; see {logs}") from None
