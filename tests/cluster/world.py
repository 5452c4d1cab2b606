"""The tiny world the engine-parity tests (and `python -m bench nightly_engines`) run on.

A simulated world of `n_days` landing days. The *base* is built once, on the embedded engine,
by the real jobs: every landing day but the last two is ingested (`jobs.ingest.ingest_day`)
and the feature snapshots up to the day after are built in one pass. Each engine then gets a
copy of the base lake (Delta tables carry only relative paths, so a copied folder is the same
table) and a fresh MLflow registry and Feast registry, and runs `train`, `promote` and the
nightly of NIGHT with its own engine: what differs between the copies afterwards is what the
engines did.

Protocol on this short world (the demo's tiny settings): train 2 days from TRAIN_START,
1 day of delay, test 1 day; gate minimums at 0 (the tests compare engines, not models).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

FIRST_DAY = date(2018, 4, 1)
TRAIN_START = date(2018, 4, 5)  # train 04-05..04-06, delay 04-07, test 04-08


@dataclass(frozen=True)
class WorldSize:
    n_customers: int = 60
    n_terminals: int = 120
    n_days: int = 11  # landing 2018-04-01 .. 04-11
    radius: float = 15.0
    compromised_terminals_per_day: int = 1
    compromised_customers_per_day: int = 1

    @property
    def night(self) -> date:
        """The day the nightly runs for: the last landing day."""
        return FIRST_DAY + timedelta(days=self.n_days - 1)

    @property
    def history_last(self) -> date:
        """The last day the base ingests (the night before NIGHT is left for the engines)."""
        return self.night - timedelta(days=1)


TINY = WorldSize()


def world_config(home: Path, size: WorldSize = TINY) -> dict[str, Any]:
    """The settings of one engine's home (written as its cardscore.yaml)."""
    return {
        "home": str(home),
        "simulator": {"n_customers": size.n_customers, "n_terminals": size.n_terminals,
                      "n_days": size.n_days, "radius": size.radius, "seed": 17,
                      "compromised_terminals_per_day": size.compromised_terminals_per_day,
                      "compromised_customers_per_day": size.compromised_customers_per_day,
                      "label_delay_max_days": 1.0},
        "training": {
            "protocol": {"train_start": TRAIN_START.isoformat(), "train_days": 2, "delay_days": 1,
                         "test_days": 1, "top_k": 10},
            "model": {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.3, "max_bin": 256, "n_jobs": 1},
            "gate": {"min_auc_roc": 0.0, "min_average_precision": 0.0, "min_card_precision_at_k": 0.0},
        },
        "monitoring": {"label_delay_days": 1},
        "pipeline": {"retry": {"max_attempts": 1}},
    }


def write_config(home: Path, size: WorldSize = TINY) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "cardscore.yaml"
    path.write_text(yaml.safe_dump(world_config(home, size), sort_keys=False))
    return path


def build_base(spark, home: Path, size: WorldSize = TINY) -> Path:
    """Simulate the world into `home`'s landing zone, ingest its history and build the
    snapshots up to the night, with the real jobs on `spark`. Returns the config path."""
    from cardscore.core.config import load_settings
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext
    from cardscore.jobs.build_features.stage import build_features_range
    from cardscore.jobs.ingest.stage import ingest_day
    from cardscore.simulator import generate_world
    from cardscore.simulator.landing import write_landing

    config = write_config(home, size)
    settings = load_settings(config)
    write_landing(generate_world(SimulatorSettings(**world_config(home, size)["simulator"])),
                  settings.landing_root)
    ctx = JobContext(settings, spark, Lake(spark, settings))
    day = FIRST_DAY
    while day <= size.history_last:
        ingest_day(ctx, day)
        day += timedelta(days=1)
    build_features_range(ctx, FIRST_DAY + timedelta(days=1), size.night)
    return config


def clone_base(base_home: Path, home: Path, size: WorldSize = TINY) -> Path:
    """A new home holding a copy of the base lake (landing zone included), nothing else: its
    own MLflow and Feast registries start empty. Returns its config path."""
    shutil.copytree(base_home / "lake", home / "lake")
    return write_config(home, size)
