"""The demo's test world and a README user's environment (see conftest.py's `demo_run`).

The world starts on 2024-02-20, not on the handbook's calendar (it crosses a leap day): the
demo must plan and run by its settings alone.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

CLI = str(Path(sys.executable).parent / "cardscore")
DEMO_DAYS = 16
FIRST_DAY = date(2024, 2, 20)
LAST_DAY = date(2024, 3, 6)  # FIRST_DAY + 15 days, 2024 being a leap year
TINY = {
    "simulator": {"n_customers": 80, "n_terminals": 160, "radius": 20.0, "seed": 4,
                  "start_date": FIRST_DAY.isoformat(),
                  "compromised_terminals_per_day": 1, "compromised_customers_per_day": 1,
                  "label_delay_max_days": 1.0},
    # 16 days (the least the demo accepts: 8 days of history before training, 4 of protocol,
    # 1 for the test day's labels to arrive, 3 nightly): train 02-28..02-29, delay 03-01,
    # test 03-02, its labels complete 03-03, nightly 03-04..03-06. No train_start is set: the
    # default is placed in this world.
    "training": {"protocol": {"train_days": 2, "delay_days": 1, "test_days": 1, "top_k": 10},
                 "gate": {"min_auc_roc": 0.0, "min_average_precision": 0.0, "min_card_precision_at_k": 0.0}},
    "monitoring": {"label_delay_days": 1},
    "kafka": {"partitions": 2},
}


def venv_env(**more: str) -> dict[str, str]:
    """The environment a README user has: the venv's bin first on PATH, nothing of cardscore's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CARDSCORE") and k not in ("SPARK_REMOTE", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env.update(more)
    return env


@dataclass(frozen=True)
class DemoRun:
    home: Path
    workspace: Path  # <home>/demo
    profile: Path  # <workspace>/cardscore.yaml, written by the demo
    output: str
    stale: Path  # a file the demo's reset must have removed

    def env(self, **more: str) -> dict[str, str]:
        """A README user's environment pointed at the demo's workspace (CARDSCORE_CONFIG)."""
        return venv_env(CARDSCORE_CONFIG=str(self.profile), **more)
