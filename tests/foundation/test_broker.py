"""The embedded broker over real TCP: produce, consume in a group, commit, resume exactly."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from cardscore.services.broker import EmbeddedBroker, broker_ready, create_topics

CONSUMER_TIMEOUTS = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}


def produce(conf: dict[str, str], topic: str, start: int, count: int) -> None:
    producer = Producer({**conf, "enable.idempotence": "true", "acks": "all"})
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    for i in range(start, start + count):
        producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), on_delivery=on_delivery)
    assert producer.flush(15) == 0
    assert failures == []


def consume(conf: dict[str, str], topic: str, group: str, want: int, timeout: float = 30.0) -> list[str]:
    """Consume until `want` messages arrived (or time out), commit synchronously, close."""
    consumer = Consumer(
        {**conf, **CONSUMER_TIMEOUTS, "group.id": group, "auto.offset.reset": "earliest",
         "enable.auto.commit": "false"}
    )
    consumer.subscribe([topic])
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            seen.append(msg.value().decode())
        if seen:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return seen


def test_round_trip_commit_and_resume_without_loss_or_duplicates(broker: EmbeddedBroker, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(broker.conf, topic, 0, 100)
    first = consume(broker.conf, topic, group, want=100)
    assert sorted(first, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(100)]

    produce(broker.conf, topic, 100, 50)
    second = consume(broker.conf, topic, group, want=50)
    assert sorted(second, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(100, 150)]
    assert not set(first) & set(second)


def test_topics_are_created_once_with_their_partitions(broker: EmbeddedBroker) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    assert create_topics(broker.conf, {name: 3}) == [name]
    assert create_topics(broker.conf, {name: 3}) == []  # idempotent
    metadata = AdminClient(broker.conf).list_topics(timeout=10)
    assert len(metadata.topics[name].partitions) == 3


def test_broker_start_and_stop(tmp_path) -> None:
    own = EmbeddedBroker(log_file=tmp_path / "b.log").start()
    try:
        assert broker_ready(own.conf)
    finally:
        own.stop()
    assert not broker_ready(own.conf, timeout=0.5)
