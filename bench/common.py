"""Shared helpers of the benchmarks: machine and version info, timed repetitions, results.

Every benchmark writes `bench/results/<name>.json` through `write_result`, which adds the
machine, the package versions, the code version and the time of the run, so numbers can be
compared across machines and commits.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_DIR = BENCH_DIR.parent

DEFAULT_PACKAGES = (
    "cardscore", "pyspark", "pysail", "deltalake", "feast", "mlflow", "xgboost",
    "scikit-learn", "pandas", "numpy", "pyarrow",
)


def machine_info() -> dict[str, Any]:
    """CPU, memory, OS and Python of this machine."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024**2, 1)
                break
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds)."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def repeat(fn: Callable[[], Any], runs: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Run `fn` warmup + runs times; the median, min and max seconds of the timed runs."""
    for _ in range(warmup):
        fn()
    seconds = [timed(fn)[1] for _ in range(runs)]
    return {
        "runs": runs,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "seconds": seconds,
    }


def write_result(
    name: str, payload: dict[str, Any], packages: Iterable[str] = DEFAULT_PACKAGES, smoke: bool = False
) -> Path:
    """Write bench/results/<name>.json with machine, versions, commit and time added; a smoke
    run (tiny setting, proves the benchmark works) writes <name>.smoke.json instead, which git
    ignores, so it never replaces measured results."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": git_commit(),
        "machine": machine_info(),
        "versions": versions(packages),
        **payload,
    }
    path = RESULTS_DIR / f"{name}{'.smoke' if smoke else ''}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
