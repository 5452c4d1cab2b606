"""Long-running local services (engine, broker): start detached, pid and log files, stop.

A pid file alone is not trusted: a service counts as running only if that pid is alive and
its command line still contains the service's marker, so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

# A child that must die with the process that started it (tests, the demo, a notebook: atexit
# does not run on SIGKILL) gets the kernel's parent-death signal from this launcher, which then
# execs the real command (same pid). Not from a `preexec_fn`: that makes CPython fork() and run
# Python in the child, and once gRPC (a Spark Connect session) ran in this process its fork
# handlers abort the child (seen: the Kafka storage format exited with SIGABRT, logging an
# epoll error). The ppid check covers a parent that died before the prctl.
_PDEATHSIG_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` run so that it gets SIGTERM when this process exits (Linux; elsewhere as is)."""
    if sys.platform != "linux":
        return list(argv)
    return [sys.executable, "-c", _PDEATHSIG_LAUNCHER, str(os.getpid()), *argv]


class ServiceError(RuntimeError):
    """A local service failed to start or stop; the message says where its log is."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    log_file: Path

    def describe(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "stopped"
        return f"{self.name}: {state} at {self.address}; log {self.log_file}"


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll `condition` until it is true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in `pid_file` if that process is alive and its command line contains `marker`
    (a recycled pid is never taken for the service); else None, and a stale file is removed."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        alive, cmdline = False, ""
    if alive and marker in cmdline:
        return pid
    pid_file.unlink(missing_ok=True)
    return None


class ManagedService:
    """A detached child process with pid and log files under `run_dir`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        run_dir: Path,
        address: str,
        ready: Callable[[], bool],
        marker: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.run_dir = Path(run_dir)
        self.address = address
        self.ready = ready
        self.marker = marker
        self.env = env
        self.pid_file = self.run_dir / f"{name}.pid"
        self.log_file = self.run_dir / f"{name}.log"

    def pid(self) -> int | None:
        """The service's pid if it is running, else None (stale pid files are removed)."""
        return running_pid(self.pid_file, self.marker)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        return ServiceStatus(self.name, pid is not None, pid, self.address, self.log_file)

    def start(self, timeout: float = 30.0) -> ServiceStatus:
        """Start unless already running; return once `ready()` is true."""
        if self.pid() is not None:
            return self.status()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # survives the CLI that started it
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"{self.name} exited with code {proc.returncode} during start; see {self.log_file}"
                )
            if self.ready():
                return self.status()
            time.sleep(0.05)
        self._terminate(proc.pid, grace=3.0)
        self.pid_file.unlink(missing_ok=True)
        raise ServiceError(f"{self.name} was not ready within {timeout:.0f}s; see {self.log_file}")

    def stop(self, grace: float = 5.0) -> bool:
        """SIGTERM, then SIGKILL after `grace` seconds. False if it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        self._terminate(pid, grace)
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _terminate(pid: int, grace: float) -> None:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
        except psutil.NoSuchProcess:
            pass
