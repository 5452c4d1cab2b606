"""The command line starts without the heavy libraries: every `cardscore` process (each Airflow
task, each spark-submit driver, `--help`) imports `cardscore.cli` first, and scikit-learn,
SciPy, XGBoost, MLflow, Feast, Great Expectations, pyspark and the Kafka client take seconds
to import together. They are imported where they are used, so a command pays only for its own."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "scipy", "xgboost", "mlflow", "feast", "great_expectations", "pyspark", "confluent_kafka")


def test_importing_the_command_line_loads_no_heavy_library() -> None:
    script = ("import json, sys; import cardscore.cli; "
              f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"`import cardscore.cli` loads {loaded}: import them where they are used"
