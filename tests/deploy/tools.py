"""Where the deployment checkers live, and what a test does when one is missing.

Every checker is the real tool, installed outside .venv by `make airflow` / `make tools` (or, for
promtool, Debian's `prometheus` package, which .ci/run installs). Locally a missing tool skips its
tests with the command that installs it; under CI (`CI` set) it fails them: a check that silently
did not run is not a check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = REPO / ".airflow-venv"
TOOLS_VENV = REPO / ".tools-venv"
TOOLS_BIN = REPO / ".tools" / "bin"
DEPLOY = REPO / "deploy"


def missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must install it: see .ci/run and the Makefile)")
    pytest.skip(message)


def tool(name: str, where: Path | None = None, install: str = "make tools") -> str:
    """Path of a checker: `where/name` if given, else found on PATH."""
    found = str(where / name) if where is not None and (where / name).is_file() else (
        None if where is not None else shutil.which(name))
    if not found:
        missing(f"{name} not found ({where or 'PATH'}); install it with `{install}`")
    return found  # type: ignore[return-value]


def promtool() -> str:
    return tool("promtool", install="apt-get install prometheus")


def run(argv: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a checker; its output is part of the assertion message when it fails."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(map(str, result.args))} -> exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
