"""Malformed messages land in the DLQ with their original bytes and the right reason, while
the good messages around them are scored; logs never carry the rejected payloads."""

from __future__ import annotations

import logging
from collections import Counter

from confluent_kafka import Consumer, TopicPartition

from cardscore.streaming import dlq
from tests.corpus import MARKER
from tests.corpus import STREAM_BAD as BAD
from tests.streaming import world


def fetch(settings, partition: int, offset: int):
    consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": "fetch", "enable.auto.commit": "false"})
    try:
        consumer.assign([TopicPartition(settings.kafka.topics.transactions, partition, offset)])
        while True:
            for m in consumer.consume(1, 5.0):
                if m.error() is None:
                    return m
    finally:
        consumer.close()


def test_every_bad_message_reaches_the_dlq_with_its_bytes_and_reason(stream_settings) -> None:
    settings = stream_settings
    good = world.transactions(len(BAD) + 20, seed=5)
    # good, bad, good, bad, ...: each bad message sits between scored neighbours
    items: list[object] = []
    for i, (_name, raw, _reason) in enumerate(BAD):
        items += [good[i], (f"bad-{i}".encode(), raw)]
    items += good[len(BAD):]
    producer_headers = [("content-type", b"application/json"), ("trace-id", b"t-1")]
    world.produce(settings, items, headers=producer_headers)
    capture = world.JsonLogLines()
    logging.getLogger("cardscore").addHandler(capture)
    try:
        with world.InProcessScorer(settings) as running:
            running.wait_for(lambda: running.totals.get("messages", 0) >= len(items), 60, "every message")
            dlq_metric = {r.value: running.metric("cardscore_stream_dlq_messages_total", {"reason": r.value})
                          for r in {reason for _, _, reason in BAD}}
    finally:
        logging.getLogger("cardscore").removeHandler(capture)

    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in good)
    assert all(len(v) == 1 for v in scores.values())

    dead = world.read_all(settings, settings.kafka.topics.dlq)
    assert len(dead) == len(BAD)
    expected = {f"bad-{i}".encode(): (name, raw, reason) for i, (name, raw, reason) in enumerate(BAD)}
    for message in dead:
        name, raw, reason = expected[message.key()]
        headers = message.headers()
        assert dlq.header(headers, dlq.REASON) == reason.value, name
        assert dlq.original_headers(headers) == producer_headers, name
        assert dlq.header(headers, dlq.SOURCE_TOPIC) == settings.kafka.topics.transactions
        source = fetch(settings, int(dlq.header(headers, dlq.SOURCE_PARTITION)), int(dlq.header(headers, dlq.SOURCE_OFFSET)))
        assert source.key() == message.key() and source.value() == message.value(), name
        assert message.value() == raw, name
    assert dlq_metric == dict(Counter(reason.value for _, _, reason in BAD))
    assert capture.lines and not any(MARKER in line for line in capture.lines)
    stopped = capture.events("stream.stopped")
    assert stopped[-1]["dlq_reasons"] == dict(Counter(reason.value for _, _, reason in BAD))
    assert stopped[-1]["dlq"] == len(BAD)
