"""Fixtures of the batch-scorer tests: one small scoring world for the session.

The world: 16 simulated days of silver (60 customers, 120 terminals) plus hand-made
transactions on the scored days by entities no snapshot knows; the gold snapshots of the
last days built by the real features job; the Feast repo applied; a real XGBoost model
trained on the training path's features (`features.retrieval.historical_features`, pandas)
and registered as the champion in a real MLflow sqlite registry. Tests only read what the
world holds; each test publishes to a predictions table of its own
(`scoring.output_table`), and a test that moves aliases registers its own model name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import xgboost as xgb

from cardscore.core.config import Settings, load_settings
from tests.scoring import world


@dataclass
class ScoringWorld:
    home: Path
    settings: Settings
    transactions: pd.DataFrame  # silver columns of every transaction written
    booster: xgb.Booster  # the champion's booster
    version: str  # the champion's version


@pytest.fixture(scope="session")
def scoring_world(spark, tmp_path_factory: pytest.TempPathFactory) -> ScoringWorld:
    home = tmp_path_factory.mktemp("scoring-world") / "home"
    settings = load_settings(overrides={"home": str(home)})
    transactions = world.build(spark, settings)
    booster = world.train_booster(spark, settings, transactions)
    version = world.register(settings, booster)
    return ScoringWorld(home, settings, transactions, booster, version)


def settings_for_test(world_settings: Settings, **scoring: object) -> Settings:
    """The world's settings with a predictions table of this test's own (plus overrides)."""
    table = f"gold.predictions_{uuid.uuid4().hex[:8]}"
    return load_settings(
        overrides={
            "home": str(world_settings.home_path),
            "scoring": {"output_table": table, **scoring},
        }
    )


@pytest.fixture
def score_settings(scoring_world: ScoringWorld) -> Settings:
    return settings_for_test(scoring_world.settings)


@pytest.fixture
def job(spark, score_settings: Settings):
    from cardscore.core.stage import job_context

    return job_context(score_settings, spark)
