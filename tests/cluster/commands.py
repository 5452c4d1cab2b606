"""Every command the engine-parity tests and the `nightly_engines` benchmark run, in one place:
the entry files, the spark-submit argument lists, the environment. When entry points move
(`jobs/nightly/main.py` -> another module), repoint them here; tests/cluster/test_readme.py checks
that the README's "Run it on a real cluster: Spark" commands are these.

An engine run: train (registers a version; the gate sets `challenger`), promote it to
`champion` (the registry only, no engine), then the nightly of one day, which scores with it.
The Connect run trains on the embedded engine (see `connect_steps`).
The settings come from `$CARDSCORE_CONFIG`, as in the README.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CARDSCORE = str(BIN / "cardscore")
SPARK_SUBMIT = "spark-submit"  # the venv's, found through PATH as the README runs it
NIGHTLY_ENTRY = "jobs/nightly/main.py"  # relative to REPO, the working directory of every command
TRAIN_ENTRY = "jobs/train/main.py"

# pytest-timeout for the JVM tests: the first one to need the session's cluster and engine runs
# also waits for them (about 10 minutes on 2 cores busy with other work).
CLUSTER_TIMEOUT = 2400

# The nightly may end with 0, or 3 when monitoring raised an alert (the night's data are
# published either way); the engines must agree on which.
NIGHTLY_OK = (0, 3)


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    env: dict[str, str]
    ok: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class StepResult:
    name: str
    returncode: int
    seconds: float
    output: str


def job_env(config: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without anything that would pick an engine or settings (a Connect URL,
    a spark-submit gateway, pyspark's Connect switch, CARDSCORE__*), the venv's bin first on
    PATH (spark-submit needs it), the venv's Python for Python workers, and `config`."""
    dropped = ("SPARK_REMOTE", "PYSPARK_GATEWAY_PORT", "SPARK_CONNECT_MODE_ENABLED", "CARDSCORE_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("CARDSCORE__")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = sys.executable
    if config is not None:
        env["CARDSCORE_CONFIG"] = str(config)
        env["SPARK_LOCAL_DIRS"] = str(config.parent / "spark-scratch")  # the driver's, not /tmp
    env.update(extra or {})
    return env


# `cardscore engine ... --classic` as the README runs them (cardscore found on PATH).
ENGINE_START = ["cardscore", "engine", "start", "--classic"]
ENGINE_STATUS = ["cardscore", "engine", "status", "--classic"]
ENGINE_STOP = ["cardscore", "engine", "stop", "--classic"]
ENGINE_JARS = ["cardscore", "engine", "jars"]
# The ports `cardscore engine start --classic` takes from the environment (tests: free ones).
PORT_ENV = ("CARDSCORE_CLASSIC_MASTER_PORT", "CARDSCORE_CLASSIC_WEBUI_PORT", "CARDSCORE_CLASSIC_CONNECT_PORT")


def nightly_args(night: date) -> list[str]:
    """--force: the README re-runs a night the demo already ran; on a fresh lake it changes nothing."""
    return ["--date", night.isoformat(), "--force"]


def train_args(train_start: date) -> list[str]:
    return ["--train-start", train_start.isoformat()]


def promote_step(config: Path) -> Step:
    return Step("promote", [CARDSCORE, "promote", "--reason", "engine parity"], job_env(config))


def sail_training_steps(config: Path, train_start: date) -> list[Step]:
    """`cardscore train` on the embedded engine, then promote."""
    return [Step("train", [CARDSCORE, "train", *train_args(train_start)], job_env(config)), promote_step(config)]


def sail_steps(config: Path, night: date, train_start: date) -> list[Step]:
    """(a) the embedded engine, through the `cardscore` commands."""
    return [*sail_training_steps(config, train_start),
            Step("nightly", [CARDSCORE, "nightly", *nightly_args(night)], job_env(config), NIGHTLY_OK)]


def spark_submit_argv(submit_args: Sequence[str], entry: str, args: Sequence[str]) -> list[str]:
    """`spark-submit <cluster options> <entry> <args>`; the options are
    `ClassicCluster.submit_args()`: --master spark://..., --jars <delta jars>, --conf ..."""
    return [SPARK_SUBMIT, *submit_args, entry, *args]


def without_delta_conf(submit_args: Sequence[str]) -> list[str]:
    """The options without Delta's two `--conf`s: with the jars on the classpath, the job's
    session turns Delta on itself (cardscore.core.engine)."""
    out: list[str] = []
    args = list(submit_args)
    while args:
        arg = args.pop(0)
        if arg == "--conf" and args and args[0].split("=", 1)[0] in DELTA_CONF_KEYS:
            args.pop(0)
            continue
        out.append(arg)
    return out


DELTA_CONF_KEYS = ("spark.sql.extensions", "spark.sql.catalog.spark_catalog")


def spark_submit_steps(submit_args: Sequence[str], config: Path, night: date, train_start: date) -> list[Step]:
    """(b) the standalone cluster: a classic driver whose executors run on the workers. The
    nightly runs the README's command; train leaves Delta's `--conf`s to the job itself."""
    env = job_env(config)
    return [
        Step("train", spark_submit_argv(without_delta_conf(submit_args), TRAIN_ENTRY, train_args(train_start)), env),
        promote_step(config),
        Step("nightly", spark_submit_argv(submit_args, NIGHTLY_ENTRY, nightly_args(night)), env, NIGHTLY_OK),
    ]


def connect_argv(entry: str, args: Sequence[str]) -> list[str]:
    """`SPARK_REMOTE=sc://... spark-submit <entry> <args>` (SPARK_REMOTE in the environment)."""
    return [SPARK_SUBMIT, entry, *args]


def connect_steps(connect_url: str, config: Path, night: date, train_start: date) -> list[Step]:
    """(c) the JVM Spark Connect server (itself an application of the standalone cluster) runs
    the README's nightly. Its model is trained on the embedded engine: training on JVM Spark is
    leg (b)'s, and the point-in-time training sets through this server are
    tests/cluster/test_feast_jvm.py's; a second JVM training run costs `make test` minutes on 2
    cores and proves nothing those two do not."""
    return [
        *sail_training_steps(config, train_start),
        Step("nightly", connect_argv(NIGHTLY_ENTRY, nightly_args(night)),
             job_env(config, {"SPARK_REMOTE": connect_url}), NIGHTLY_OK),
    ]


_RUNNING: set[subprocess.Popen] = set()  # steps in progress, for kill_running
_RUNNING_LOCK = threading.Lock()


def run_step(step: Step, timeout: float = 1800) -> StepResult:
    """Run one step to the end; AssertionError (with the output's tail) unless its exit code is ok."""
    started = time.perf_counter()
    proc = subprocess.Popen(step.argv, env=step.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"{step.name} ran longer than {timeout:.0f} s: {' '.join(step.argv)}\n"
                             f"{(stdout + stderr)[-6000:]}") from None
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    result = StepResult(step.name, proc.returncode, time.perf_counter() - started, stdout + stderr)
    if proc.returncode not in step.ok:
        raise AssertionError(
            f"{step.name} exited {proc.returncode}: {' '.join(step.argv)}\n{result.output[-6000:]}"
        )
    return result


def run_steps(steps: Sequence[Step], timeout: float = 1800) -> list[StepResult]:
    return [run_step(step, timeout) for step in steps]


def kill_running() -> None:
    """Kill every step still running (a test run that stops early must not leave them behind)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """The step and what it started (spark-submit's Python driver) : its own process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
