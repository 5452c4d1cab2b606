"""Replay to a real (embedded, Kafka-compatible) broker and back through a consumer group."""

from __future__ import annotations

import time
import uuid
from datetime import date

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from cardscore.core.config import Settings
from cardscore.services.broker import EmbeddedBroker, free_port
from cardscore.simulator import World, read_landing_day, write_landing
from cardscore.simulator.kafka import DeliveryError, TokenBucket, produce_events, replay_day

DAY = date(2018, 4, 10)


def consume(
    conf: dict[str, str], topic: str, expected: int, group: bool = True, timeout: float = 30.0
) -> list[Message]:
    """Read `expected` messages (a fresh consumer group, or every partition assigned from the
    start when `group` is False), or fail after `timeout` seconds."""
    consumer = Consumer(
        {
            **conf,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            "session.timeout.ms": "6000",
            "heartbeat.interval.ms": "500",
        }
    )
    if group:
        consumer.subscribe([topic])
    else:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                assert msg.error() is None, msg.error()
                messages.append(msg)
        # Nothing more should arrive: a short extra poll catches duplicates.
        messages.extend(
            m for m in consumer.consume(num_messages=1000, timeout=0.5) if not m.error()
        )
    finally:
        consumer.close()
    return messages


def test_replay_day_round_trip(kafka_settings: Settings, small_world: World) -> None:
    write_landing(small_world, kafka_settings.landing_root)
    lines = read_landing_day(kafka_settings.landing_root, DAY)
    assert len(lines) > 200
    progressed: list[int] = []

    count = replay_day(kafka_settings, DAY, progress=progressed.append)

    assert count == len(lines) == sum(progressed)
    topic = kafka_settings.kafka.topics.transactions
    messages = consume(kafka_settings.kafka_conf(), topic, len(lines))
    assert len(messages) == len(lines)
    assert sorted(m.value() for m in messages) == sorted(lines)  # byte-equal, no duplicates
    tx = small_world.transactions.set_index("transaction_id")
    by_customer: dict[bytes, list[bytes]] = {}
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        assert dict(msg.headers()) == {
            "content-type": b"application/json",
            "schema": b"transaction_event.v2",
        }
        tx_id = int(msg.value().split(b",")[0].split(b":")[1])
        assert msg.key() == str(tx.loc[tx_id, "customer_id"]).encode()
        by_customer.setdefault(msg.key(), []).append(msg.value())
    # per card, the topic holds the landing order (event-time order)
    for key, values in by_customer.items():
        assert values == [
            line for line in lines if f'"customer_id":{key.decode()},'.encode() in line
        ]
    assert len({m.partition() for m in messages}) == 2  # keys spread over both partitions


def test_rate_is_paced(
    broker: EmbeddedBroker, topic: str, small_world: World, settings: Settings
) -> None:
    write_landing(small_world, settings.landing_root)
    lines = read_landing_day(settings.landing_root, DAY)[:300]
    started = time.monotonic()
    assert produce_events(lines, broker.conf, topic, rate=1000) == 300
    elapsed = time.monotonic() - started
    # 300 events at 1000/s with a 50-event bucket: at least ~0.25 s, and not wildly slower
    assert 0.24 <= elapsed < 3.0


def test_token_bucket_sleeps_per_refill_not_per_message() -> None:
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # the real sleep, counted
        naps.append(seconds)
        time.sleep(seconds)

    bucket = TokenBucket(rate=2000, sleep=sleep)  # capacity 100 events (1/20 s)
    started = time.monotonic()
    for _ in range(500):
        bucket.take()
    elapsed = time.monotonic() - started
    assert 1 <= len(naps) <= 6  # about one nap per 100 events after the first full bucket
    assert 0.18 <= elapsed < 1.0  # (500 - 100) / 2000 = 0.2 s


def test_undeliverable_messages_raise() -> None:
    conf = {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": "1000"}
    line = b'{"transaction_id":0,"event_time":"2018-04-01T00:00:01Z","customer_id":1,"terminal_id":2,"amount":1.0}'
    with pytest.raises(DeliveryError, match=r"failed|unacknowledged"):
        produce_events([line], conf, "nowhere", flush_timeout=15)


def test_lines_without_a_customer_are_refused(broker: EmbeddedBroker, topic: str) -> None:
    with pytest.raises(ValueError, match="customer_id"):
        produce_events([b'{"transaction_id":1}'], broker.conf, topic)
