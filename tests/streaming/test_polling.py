"""`take_batch` on the real broker: a batch is what is there, not what a timeout collects."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer

from cardscore.services.broker import EmbeddedBroker
from cardscore.streaming.polling import take_batch
from tests.streaming.world import TEST_CONSUMER


def test_take_batch_returns_what_is_queued_without_waiting_for_the_batch_to_fill(
    broker: EmbeddedBroker, topic: str
) -> None:
    producer = Producer({**broker.conf, "linger.ms": "0"})
    for i in range(7):
        producer.produce(topic, value=f"m{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({**broker.conf, **TEST_CONSUMER, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": "5"})
    consumer.subscribe([topic])
    try:
        seen: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(seen) < 7 and time.monotonic() < deadline:
            # A 500-message batch with a 120 s wait: consume(500, 120) would block for 120 s
            # on 7 messages; take_batch hands over what arrived as soon as it is there.
            seen += [m.value() for m in take_batch(consumer, 500, 120.0) if m.error() is None]
        assert sorted(seen) == [f"m{i}".encode() for i in range(7)]
        assert time.monotonic() < deadline
        # Nothing queued: the call waits for at most its timeout and returns empty.
        assert [m for m in take_batch(consumer, 500, 0.2) if m.error() is None] == []
    finally:
        consumer.close()


def test_take_batch_never_returns_more_than_asked(broker: EmbeddedBroker, topic: str) -> None:
    producer = Producer({**broker.conf, "linger.ms": "0"})
    for i in range(30):
        producer.produce(topic, value=f"m{i}".encode(), partition=1)
    assert producer.flush(30) == 0
    consumer = Consumer({**broker.conf, **TEST_CONSUMER, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        total, deadline = 0, time.monotonic() + 60
        while total < 30 and time.monotonic() < deadline:
            batch = [m for m in take_batch(consumer, 4, 5.0) if m.error() is None]
            assert len(batch) <= 4
            total += len(batch)
        assert total == 30
    finally:
        consumer.close()
