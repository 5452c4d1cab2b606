"""Long-running local services (engine, broker): start detached, pid and log files, stop.

A pid file alone is not trusted: a service counts as running only if that pid is alive and
its command line still contains the service's marker, so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


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
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
            cmdline = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            alive, cmdline = False, ""
        if alive and self.marker in cmdline:
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

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
