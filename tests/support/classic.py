"""Run a pure DataFrame transformation on classic JVM Spark (`local[2]`) in a subprocess.

A Spark Connect session (the embedded engine) and a classic session cannot share one Python
process: pyspark switches its function implementations to Connect process-wide. Parity tests
therefore write inputs as Parquet, call `run_on_classic`, and compare with the Sail result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

RUNNER = Path(__file__).with_name("classic_runner.py")
REPO = Path(__file__).resolve().parents[2]


def run_on_classic(
    function: str, inputs: dict[str, Path], out: Path, kwargs: dict | None = None, timeout: float = 600
) -> pd.DataFrame:
    """`function` is "module:name"; it is called as name(spark, **dataframes, **kwargs)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    env.pop("SPARK_REMOTE", None)
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    spec = {"function": function, "inputs": {k: str(v) for k, v in inputs.items()},
            "out": str(out), "kwargs": kwargs or {}}
    proc = subprocess.run(
        [sys.executable, str(RUNNER), json.dumps(spec)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
    )
    if proc.returncode != 0:
        raise AssertionError(f"classic Spark run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return pd.read_parquet(out)
