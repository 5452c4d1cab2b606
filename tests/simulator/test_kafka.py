"""Replay to a real (embedded, Kafka-compatible) broker and back through a consumer group."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    Message,
    TopicPartition,
)
from pyarrow.fs import FileSystem

from cardscore.core.config import Settings
from cardscore.schemas.timestamps import parse_timestamp_us
from cardscore.services.broker import EmbeddedBroker, free_port
from cardscore.simulator import World, landing_file, read_landing_day, write_landing
from cardscore.simulator.kafka import (
    DeliveryError,
    OutMessage,
    ReplayReport,
    TokenBucket,
    produce_events,
    replay_day,
    replay_messages,
)
from cardscore.streaming.messages import split_label_messages

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

    report = replay_day(kafka_settings, DAY, progress=progressed.append)

    assert report.transactions == len(lines) and report.total == sum(progressed)
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


# ---------------------------------------------------------------- the labels topic


def _landing_path(settings: Settings, feed: str, day: date) -> Path:
    _, root = FileSystem.from_uri(settings.landing_root)  # a file:// URI in the tests
    return Path(root) / landing_file(feed, day)


def _by_partition(messages: list[Message]) -> dict[int, list[tuple[bytes | None, bytes]]]:
    out: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        out.setdefault(msg.partition(), []).append((msg.key(), msg.value()))
    return out


def test_replay_publishes_the_days_label_reports_in_time_order(
    kafka_settings: Settings, small_world: World
) -> None:
    write_landing(small_world, kafka_settings.landing_root)
    tx_lines = read_landing_day(kafka_settings.landing_root, DAY)
    label_lines = read_landing_day(kafka_settings.landing_root, DAY, "labels")
    assert len(label_lines) >= 3  # the world has reports that day, else nothing is tested

    # Paced, so the producer's CreateTime timestamps show the send order across the topics.
    report = replay_day(kafka_settings, DAY, rate=600)

    assert (report.transactions, report.labels, report.unkeyed_labels) == (
        len(tx_lines), len(label_lines), 0)
    topics = kafka_settings.kafka.topics
    conf = kafka_settings.kafka_conf()
    txs = consume(conf, topics.transactions, len(tx_lines), group=False)
    labels = consume(conf, topics.labels, len(label_lines), group=False)
    # Exactly the day's reports, byte for byte, validated like the stream validates.
    assert sorted(m.value() for m in labels) == sorted(label_lines)
    checked = split_label_messages(labels, max_bytes=64 * 1024)
    assert checked.rejected == [] and len(checked.records) == len(label_lines)
    assert {dict(m.headers())["schema"] for m in labels} == {b"label_event.v2"}

    # Keyed by the card of the labelled transaction, in its transaction's partition.
    card_of = small_world.transactions.set_index("transaction_id")["customer_id"]
    tx_partition = {json.loads(m.value())["transaction_id"]: m.partition() for m in txs}
    same_day = 0
    for msg, record in zip(checked.messages, checked.records, strict=True):
        assert msg.key() == str(card_of[record["transaction_id"]]).encode()
        if record["transaction_id"] in tx_partition:
            same_day += 1
            assert msg.partition() == tx_partition[record["transaction_id"]]
    assert same_day >= 1  # some reports are of the day's own transactions (delays from 1 h)

    # Time order across the topics: every transaction at or before a report's time was sent
    # no later than the report, every later one no earlier (CreateTime, ms).
    tx_times = [(parse_timestamp_us(json.loads(m.value())["event_time"]), m.timestamp()[1])
                for m in txs]
    for msg, record in zip(checked.messages, checked.records, strict=True):
        sent = msg.timestamp()[1]
        before = [s for t, s in tx_times if t <= record["reported_time"]]
        after = [s for t, s in tx_times if t > record["reported_time"]]
        assert not before or max(before) <= sent
        assert not after or sent <= min(after)
    assert all(m.timestamp()[0] == TIMESTAMP_CREATE_TIME for m in txs + labels)


def test_replay_sequence_merges_by_time_transactions_first_at_ties(
    kafka_settings: Settings, small_world: World
) -> None:
    write_landing(small_world, kafka_settings.landing_root)
    messages, report = replay_messages(kafka_settings, DAY)
    topics = kafka_settings.kafka.topics

    def time_of(m: OutMessage) -> tuple[int, int]:
        body = json.loads(m.value)
        if m.topic == topics.labels:
            return parse_timestamp_us(body["reported_time"]), 1
        return parse_timestamp_us(body["event_time"]), 0

    order = [time_of(m) for m in messages]
    assert order == sorted(order)  # by time; at equal times transactions (0) before reports (1)
    assert sum(m.topic == topics.labels for m in messages) == report.labels > 0
    assert [m.value for m in messages if m.topic == topics.transactions] == read_landing_day(
        kafka_settings.landing_root, DAY)
    without, no_labels = replay_messages(kafka_settings, DAY, labels=False)
    assert no_labels.labels == 0 and all(m.topic == topics.transactions for m in without)


def test_a_report_at_a_transactions_time_comes_after_it_and_unknown_ones_have_no_key(
    kafka_settings: Settings,
) -> None:
    tx = [b'{"transaction_id":1,"event_time":"2018-04-10T10:00:00Z","customer_id":7,'
          b'"terminal_id":3,"amount":5.0}',
          b'{"transaction_id":2,"event_time":"2018-04-10T12:00:00Z","customer_id":8,'
          b'"terminal_id":3,"amount":6.0}']
    earlier = [b'{"transaction_id":9,"event_time":"2018-04-03T09:00:00Z","customer_id":42,'
               b'"terminal_id":4,"amount":1.0}']
    labels = [b'{"transaction_id":9,"is_fraud":true,"reported_time":"2018-04-10T12:00:00Z",'
              b'"fraud_scenario":2}',
              b'{"transaction_id":1,"is_fraud":true,"reported_time":"2018-04-10T11:00:00Z",'
              b'"fraud_scenario":1}',
              b'{"transaction_id":555,"is_fraud":true,"reported_time":"2018-04-10T13:00:00Z",'
              b'"fraud_scenario":null}']
    for feed, day, lines in (("transactions", DAY, tx), ("labels", DAY, labels),
                             ("transactions", date(2018, 4, 3), earlier)):
        path = _landing_path(kafka_settings, feed, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\n".join(lines) + b"\n")

    messages, report = replay_messages(kafka_settings, DAY)

    assert [m.value for m in messages] == [tx[0], labels[1], tx[1], labels[0], labels[2]]
    assert [m.key for m in messages] == [b"7", b"7", b"8", b"42", None]
    assert report == ReplayReport(transactions=2, labels=3, unkeyed_labels=1)


def test_a_rerun_appends_the_same_sequence_again(
    kafka_settings: Settings, small_world: World
) -> None:
    """Like the transactions replay always did: Kafka topics are append-only, so a rerun sends
    the day again, the same messages in the same partitions in the same order (consumers drop
    repeated transaction ids; a repeated fraud report changes nothing)."""
    write_landing(small_world, kafka_settings.landing_root)
    first = replay_day(kafka_settings, DAY)
    second = replay_day(kafka_settings, DAY)
    assert first == second
    conf = kafka_settings.kafka_conf()
    topics = kafka_settings.kafka.topics
    for topic, count in ((topics.transactions, first.transactions), (topics.labels, first.labels)):
        per_partition = _by_partition(consume(conf, topic, 2 * count, group=False))
        assert sum(len(v) for v in per_partition.values()) == 2 * count
        for sequence in per_partition.values():
            half = len(sequence) // 2
            assert sequence[:half] == sequence[half:]


def test_a_bad_label_line_stops_the_replay_before_anything_is_sent(
    kafka_settings: Settings, small_world: World
) -> None:
    write_landing(small_world, kafka_settings.landing_root)
    path = _landing_path(kafka_settings, "labels", DAY)
    path.write_bytes(path.read_bytes() + b'{"transaction_id":1,"is_fraud":"yes"}\n')
    with pytest.raises(ValueError, match="not a valid label event"):
        replay_messages(kafka_settings, DAY)
