"""The release benchmarks' commands parse (they are run for numbers by the lead, not here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.common import REPO_DIR


@pytest.mark.parametrize("name", ["release_latency", "release_stream"])
def test_release_bench_commands_parse(name: str) -> None:
    listed = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=REPO_DIR, capture_output=True,
                            text=True, timeout=300)
    assert name in listed.stdout
    done = subprocess.run([sys.executable, "-m", "bench", name, "--help"], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "usage" in done.stdout and "--smoke" in done.stdout, done.stderr
