"""One small nightly world, twice: the same state in two homes, so that one night run two ways
(`cardscore nightly` and the Airflow DAG) can be compared table by table.

The world is tests/pipeline/test_nightly.py's (simulated landing files, real Delta, Feast, MLflow):
two nights without a model, then a champion (that module's `rare_fraud_booster`, registered the
way tests/scoring/world.py does), then the home is copied and the copy's Feast registry re-applied
(its sources name absolute table paths).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from cardscore.core.config import Settings, load_settings

# Terminal features start once a terminal's labels are 7 days old: ten days give both tables rows.
PREPARED_NIGHTS = tuple(date(2018, 4, d) for d in range(1, 9))
NIGHT = date(2018, 4, 9)  # the night both runners run


@dataclass
class Twin:
    config: Path
    settings: Settings


def write_config(home: Path, path: Path) -> Path:
    from cardscore.core.config.simulator import SimulatorSettings

    params = SimulatorSettings(n_customers=40, n_terminals=80, n_days=10, radius=20.0, seed=3,
                               compromised_terminals_per_day=1, compromised_customers_per_day=1)
    path.write_text(yaml.safe_dump({
        "home": str(home),
        "simulator": params.model_dump(mode="json"),
        "pipeline": {"retry": {"max_attempts": 1}},
        "logging": {"format": "json", "level": "INFO"},
    }))
    return path


def prepare(spark, root: Path) -> tuple[Twin, Twin]:
    """Two homes holding the same world, ready for NIGHT: silver up to the night before, the
    snapshot of NIGHT built (the night before builds it), a champion."""
    from cardscore.core.runner import execute
    from cardscore.core.stage import job_context
    from cardscore.features.store import apply
    from cardscore.jobs.nightly.pipeline import NIGHTLY
    from cardscore.simulator import generate_world
    from cardscore.simulator.landing import write_landing
    from tests.pipeline.test_nightly import rare_fraud_booster
    from tests.scoring.world import register

    first = Twin(write_config(root / "a" / "home", root / "a.yaml"), None)  # type: ignore[arg-type]
    first.settings = load_settings(first.config)
    write_landing(generate_world(first.settings.simulator), first.settings.landing_root)
    results = execute(NIGHTLY, job_context(first.settings, spark), list(PREPARED_NIGHTS))
    assert not any(r.failed for r in results), [r.failed for r in results]
    register(first.settings, rare_fraud_booster())

    shutil.copytree(root / "a", root / "b")
    second_settings = load_settings(write_config(root / "b" / "home", root / "b.yaml"))
    apply(second_settings)  # the copied registry's sources still name the first home's tables
    return first, Twin(root / "b.yaml", second_settings)
