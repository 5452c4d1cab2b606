"""Fixtures of the feature tests: a real redis-server on a free port, and one built feature
world (silver, gold snapshots, Feast registry) shared by the read-only tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pandas as pd
import pytest

from cardscore.core.config import Settings, load_settings
from tests.features.worlds import small_world, sparse_entities, write_silver

# The shared world: simulator data from 2018-04-01 for 50 days, plus sparse hand-made entities.
WORLD_FIRST_SNAPSHOT = date(2018, 4, 28)
WORLD_LAST_SNAPSHOT = date(2018, 5, 12)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for the session; yields host:port."""
    from tests.support.redis import RedisServer

    try:
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server.address
    finally:
        server.stop()


@dataclass
class FeatureWorld:
    settings: Settings
    lake: object
    transactions: pd.DataFrame  # transaction_id, event_time, customer_id, terminal_id, amount
    labels: pd.DataFrame  # transaction_id, is_fraud, reported_time, fraud_scenario
    first: date  # first and last snapshot days built into gold
    last: date


@pytest.fixture(scope="session")
def feature_world(spark, tmp_path_factory: pytest.TempPathFactory) -> FeatureWorld:
    """Silver from a small simulator world plus sparse entities; gold built for 15 days by the
    real job (one pass, gated); the Feast repo applied with the SQLite online store."""
    from cardscore.core.lake import Lake
    from cardscore.core.stage import job_context
    from cardscore.features.store import apply
    from cardscore.jobs.build_features.stage import build_features_range

    home = tmp_path_factory.mktemp("feature-world")
    settings = load_settings(overrides={"home": str(home)})
    lake = Lake(spark, settings)
    world = small_world(seed=5, n_days=50, late_labels=True)
    extra_tx, extra_labels = sparse_entities()
    columns = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]
    transactions = pd.concat([world.transactions[columns], extra_tx[columns]], ignore_index=True)
    labels = pd.concat(
        [world.labels[["transaction_id", "is_fraud", "reported_time"]], extra_labels], ignore_index=True
    )
    write_silver(lake, transactions, labels)
    build_features_range(job_context(settings, spark), WORLD_FIRST_SNAPSHOT, WORLD_LAST_SNAPSHOT)
    apply(settings)
    return FeatureWorld(settings, lake, transactions, labels, WORLD_FIRST_SNAPSHOT, WORLD_LAST_SNAPSHOT)
