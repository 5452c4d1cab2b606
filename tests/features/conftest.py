"""Fixtures of the feature tests: a real redis-server on a free port, and one built feature
world (silver, gold snapshots, Feast registry) shared by the read-only tests."""

from __future__ import annotations

import shutil
import subprocess
import time
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
    import redis

    from cardscore.services.broker import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: the Redis online store is tested against a real "
            "server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
        )
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_path = folder / "redis.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(folder)],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if client.ping():
                break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not answer on port {port} within 15 s")
            time.sleep(0.05)  # poll interval of the readiness check, not a synchronisation
    try:
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


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
