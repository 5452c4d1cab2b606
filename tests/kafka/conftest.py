"""Fixtures of the tests against a real Apache Kafka (KRaft, from the jars of `make jars`).

Two clusters at most for the whole run, each started on first use and stopped at the end
(their JVMs also die with the test process: PDEATHSIG): `kafka1`, one node, and `kafka3`,
three nodes with replication factor 3 and min.insync.replicas 2.

In this folder `broker` is the one-node Apache Kafka, so the stream-scorer fixtures of
tests/streaming (`stream_settings`, `spawn`, on the shared `stream_world`) run against it
unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from cardscore.core.config import Settings, load_settings
from cardscore.services.broker import create_topics, project_topics
from cardscore.services.kafka_cluster import KafkaCluster
from tests.streaming import world
from tests.streaming.conftest import (  # noqa: F401 - fixtures used by the tests of this folder
    STREAMING_TEST_SETTINGS,
    StreamWorld,
    spawn,
    stream_settings,
    stream_world,
)


def _cluster(tmp_path_factory: pytest.TempPathFactory, nodes: int) -> Iterator[KafkaCluster]:
    root = tmp_path_factory.mktemp(f"kafka{nodes}")
    cluster = KafkaCluster(root, nodes)
    cluster.start(timeout=240)
    try:
        cluster.warm_up()  # internal topics and producer ids: no test's timing includes them
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kafka1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A one-node Apache Kafka cluster for the run (data on disk: it survives restarts)."""
    yield from _cluster(tmp_path_factory, 1)


@pytest.fixture(scope="session")
def kafka3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A three-node Apache Kafka cluster for the run."""
    yield from _cluster(tmp_path_factory, 3)


@pytest.fixture(scope="session")
def broker(kafka1: KafkaCluster) -> KafkaCluster:
    """Here the broker of the stream-scorer fixtures is the one-node Apache Kafka."""
    return kafka1


def stream_settings_on(cluster: KafkaCluster, world_: StreamWorld, **streaming: object) -> Settings:
    """Like `stream_settings`, on `cluster` with topics replicated as its defaults say."""
    suffix = uuid.uuid4().hex[:8]
    assert cluster.layout is not None
    settings = load_settings(overrides={
        "home": str(world_.home),
        "kafka": {
            "mode": "external",
            "client": {"bootstrap.servers": cluster.bootstrap},
            "consumer": world.TEST_CONSUMER,
            "partitions": 2,
            "replication_factor": cluster.layout.replication_factor,
            "topics": {"transactions": f"tx-{suffix}", "scores": f"scores-{suffix}", "dlq": f"dlq-{suffix}",
                       "labels": f"labels-{suffix}"},
        },
        "streaming": {**STREAMING_TEST_SETTINGS, "group_id": f"scorer-{suffix}", **streaming},
    })
    create_topics(settings.kafka_conf(), project_topics(settings), settings.kafka.replication_factor)
    return settings


def read_committed(settings: Settings, committed: bool = True) -> Settings:
    """`settings` whose test readers (world.read_all, ...) see committed transactions only
    (librdkafka's default), or with `committed=False` every record in the log."""
    level = "read_committed" if committed else "read_uncommitted"
    consumer = {**settings.kafka.consumer, "isolation.level": level}
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"consumer": consumer})})


def end_offsets(conf: dict[str, str], topic: str, partitions: int,
                isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED) -> dict[int, int]:
    """The broker's answer for the end of each partition: the high watermark
    (READ_UNCOMMITTED) or the last stable offset (READ_COMMITTED), via ListOffsets."""
    admin = AdminClient(conf)
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    futures = admin.list_offsets(request, isolation_level=isolation, request_timeout=15)
    return {tp.partition: future.result(timeout=20).offset for tp, future in futures.items()}


def group_offsets(conf: dict[str, str], group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets as the broker reports them (-1001: none)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = AdminClient(conf)
    wanted = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    result = admin.list_consumer_group_offsets([wanted], require_stable=True)[group].result(timeout=20)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text()[-chars:] if path.exists() else f"(no {path})"
