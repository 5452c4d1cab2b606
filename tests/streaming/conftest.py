"""Fixtures of the stream-scorer tests.

One workspace for the session holds what is slow to build and only read by the tests: a
Feast SQLite online store with day DAY's snapshot rows and an MLflow sqlite registry whose
model `cardscore-fraud` has a champion. Each test gets its own topics and consumer group, and
a test that moves aliases registers its own model name in that registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cardscore.core import registry
from cardscore.core.config import Settings, load_settings
from cardscore.services.broker import EmbeddedBroker, create_topics, project_topics
from tests.streaming import world

STREAMING_TEST_SETTINGS: dict[str, Any] = {
    "batch_max_messages": 50,
    "batch_max_wait_ms": 50,
    "model_poll_seconds": 0.2,
    "metrics_port": 0,
    "retry_initial_seconds": 0.1,
    "retry_max_seconds": 1.0,
    "delivery_timeout_seconds": 10.0,
    "progress_interval_seconds": 0,  # stream.progress after every batch: tests wait on it
}


@dataclass
class StreamWorld:
    home: Path
    customers: pd.DataFrame
    terminals: pd.DataFrame
    version: str


@pytest.fixture(scope="session")
def stream_world(tmp_path_factory: pytest.TempPathFactory) -> StreamWorld:
    """Day DAY's snapshot in the online store (customers 0-29, terminals 0-24) and a champion."""
    home = tmp_path_factory.mktemp("stream-world") / "home"
    settings = load_settings(overrides={"home": str(home)})
    customers, terminals = world.fill_online_store(settings)
    version = world.register(settings, world.booster(seed=0))
    return StreamWorld(home, customers, terminals, version)


@pytest.fixture
def stream_settings(stream_world: StreamWorld, broker: EmbeddedBroker) -> Settings:
    """The shared world, this test's own topics (created) and consumer group, quick batches."""
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(
        overrides={
            "home": str(stream_world.home),
            "kafka": {
                "mode": "external",
                "client": {"bootstrap.servers": broker.bootstrap},
                "consumer": world.TEST_CONSUMER,
                "partitions": 2,
                "topics": {"transactions": f"tx-{suffix}", "scores": f"scores-{suffix}", "dlq": f"dlq-{suffix}",
                           "labels": f"labels-{suffix}"},
            },
            "streaming": {**STREAMING_TEST_SETTINGS, "group_id": f"scorer-{suffix}"},
        }
    )
    create_topics(settings.kafka_conf(), project_topics(settings))
    return settings


@pytest.fixture
def spawn() -> Iterator[Callable[..., world.ScorerProcess]]:
    """Start scorer subprocesses (`world.start_scorer`); any still running at the end of the
    test (a failed assertion) is killed, so none outlives its test."""
    started: list[world.ScorerProcess] = []

    def start(config: Path, log: Path, *args: str) -> world.ScorerProcess:
        process = world.start_scorer(config, log, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(10)


def own_model(settings: Settings) -> Settings:
    """`settings` with a model name of its own, for a test that moves the champion alias."""
    registry.clear_caches()
    return settings.model_copy(
        update={"mlflow": settings.mlflow.model_copy(update={"model_name": f"m-{uuid.uuid4().hex[:8]}"})}
    )
