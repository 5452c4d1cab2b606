"""Pipelined at-least-once delivery on the real broker: offsets are committed only after the
acknowledgements of their batch and of every batch before it, and count as committed only once
the consumer's on_commit confirmed them; a failure rewinds to the first batch in flight and
commits nothing from it on."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from cardscore.services.broker import EmbeddedBroker, free_port
from cardscore.streaming.commits import COMMIT_WAIT_SECONDS, OffsetCommits
from cardscore.streaming.delivery import OutRecord
from cardscore.streaming.metrics import StreamMetrics
from cardscore.streaming.pipelined import PipelinedAtLeastOnce, PipelineFailed
from tests.streaming.world import TEST_CONSUMER

SOURCE = "source-topic"  # offsets committed for it; nothing is read from it


def committed(consumer: Consumer) -> dict[int, int]:
    found = consumer.committed([TopicPartition(SOURCE, p) for p in (0, 1)], timeout=10)
    return {tp.partition: tp.offset for tp in found}


@pytest.fixture
def commits() -> OffsetCommits:
    return OffsetCommits(StreamMetrics())


@pytest.fixture
def consumer(broker: EmbeddedBroker, commits: OffsetCommits):
    from cardscore.services.broker import create_topics

    create_topics(broker.conf, {SOURCE: 2})
    c = Consumer({**broker.conf, **TEST_CONSUMER, **commits.consumer_conf(), "group.id": f"g-{uuid.uuid4().hex}",
                  "enable.auto.commit": "false"})
    yield c
    c.close()


def pipeline(conf: dict, consumer: Consumer, commits: OffsetCommits, timeout: float,
             max_uncommitted: int) -> PipelinedAtLeastOnce:
    return PipelinedAtLeastOnce(conf, consumer, commits.metrics, timeout, max_uncommitted, commits=commits)


def records(topic: str, n: int, tag: str) -> list[OutRecord]:
    return [OutRecord(topic, f"{tag}{i}".encode(), f"{tag}-{i}".encode(), []) for i in range(n)]


def test_offsets_are_committed_after_the_acknowledgements_in_batch_order(broker, topic, consumer, commits) -> None:
    acked: list[str] = []
    delivery = pipeline(broker.conf, consumer, commits, 10.0, max_uncommitted=100)
    try:
        delivery.send(records(topic, 20, "a"), {(SOURCE, 0): 20}, {(SOURCE, 0): 0}, lambda b: acked.append("a"))
        delivery.send(records(topic, 30, "b"), {(SOURCE, 0): 35, (SOURCE, 1): 7},
                      {(SOURCE, 0): 20, (SOURCE, 1): 0}, lambda b: acked.append("b"))
        assert delivery.in_flight == 50 and committed(consumer) == {0: -1001, 1: -1001}
        deadline = time.monotonic() + 30
        while delivery.batches:
            assert time.monotonic() < deadline, "no acknowledgements"
            delivery.collect(timeout=0.05)
        assert acked == ["a", "b"]
        # The commit went out asynchronously; until on_commit (served by the consumer) confirms
        # it, the offsets are pending and the messages still count as uncommitted.
        assert delivery.pending == {(SOURCE, 0): 35, (SOURCE, 1): 7} and delivery.in_flight == 50
        serve_until(commits, lambda: not delivery.pending)
        delivery.collect()
        assert delivery.in_flight == 0 and commits.confirmed == {(SOURCE, 0): 35, (SOURCE, 1): 7}
        assert committed(consumer) == {0: 35, 1: 7}
        assert delivery.metrics.value("cardscore_stream_stage_latency_seconds_count", {"stage": "ack"}) == 2
        assert delivery.metrics.value("cardscore_stream_commits_total") >= 1
    finally:
        delivery.close()


def sent_offsets(commits: OffsetCommits) -> dict[tuple[str, int], int]:
    return {key: offset for key, (offset, _) in commits.sent.items()}


def serve_until(commits: OffsetCommits, done, send: bool = True) -> None:
    """Serve commit confirmations until `done()`; `send`: and send what is due after each, as
    the scorer's loop does."""
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, "no commit confirmation"
        commits.serve(0.05)
        if send:
            commits.commit()


def test_one_commit_request_is_in_flight_at_a_time(consumer, commits) -> None:
    """Offsets acknowledged while a commit is unconfirmed go in the next request, sent once it
    is confirmed (a commit per micro-batch queued up at Apache Kafka's coordinator); a request
    unconfirmed for longer than a coordinator that answers takes holds nothing back."""
    commits.attach(consumer)
    commits.add({(SOURCE, 0): 10})
    commits.commit()
    assert sent_offsets(commits) == {(SOURCE, 0): 10}
    commits.add({(SOURCE, 0): 20, (SOURCE, 1): 5})
    commits.commit(force=True)  # force skips a failure's backoff, not the request in flight
    assert sent_offsets(commits) == {(SOURCE, 0): 10}
    serve_until(commits, lambda: (SOURCE, 0) in commits.confirmed, send=False)
    assert commits.confirmed == {(SOURCE, 0): 10} and commits.pending == {(SOURCE, 0): 20, (SOURCE, 1): 5}
    commits.commit()  # the confirmation frees the next request: every newer offset in one
    assert sent_offsets(commits) == {(SOURCE, 0): 20, (SOURCE, 1): 5}
    serve_until(commits, lambda: not commits.pending)
    assert committed(consumer) == {0: 20, 1: 5}

    commits.add({(SOURCE, 0): 30})
    commits.commit()
    offset, at = commits.sent[(SOURCE, 0)]
    commits.sent[(SOURCE, 0)] = (offset, at - COMMIT_WAIT_SECONDS - 0.1)  # as if its coordinator went away
    commits.add({(SOURCE, 1): 9})
    commits.commit()
    assert sent_offsets(commits)[(SOURCE, 1)] == 9
    serve_until(commits, lambda: not commits.pending)
    assert committed(consumer) == {0: 30, 1: 9}


def test_uncommitted_output_is_bounded(broker, topic, consumer, commits) -> None:
    delivery = pipeline(broker.conf, consumer, commits, 10.0, max_uncommitted=50)
    try:
        assert delivery.room_for(500)  # an empty pipeline takes any batch
        delivery.send(records(topic, 40, "a"), {(SOURCE, 0): 40}, {(SOURCE, 0): 0})
        assert delivery.room_for(10) and not delivery.room_for(11)
        # serves acknowledgements, then the commit's confirmation, until the first batch is committed
        delivery.wait_for_room(11)
        assert delivery.in_flight == 0 and committed(consumer)[0] == 40
        delivery.send(records(topic, 5, "b"), {(SOURCE, 1): 5}, {(SOURCE, 1): 0})
        delivery.forget({(SOURCE, 1)})  # lost to another member: never committed here
        delivery.drain()
        assert committed(consumer) == {0: 40, 1: -1001}
    finally:
        delivery.close()


def test_a_failed_batch_fails_every_later_one_and_commits_nothing(broker, consumer, commits) -> None:
    """Records to a broker that is not there time out: the first batch in flight fails, the
    later one with it, and the rewind points at the first of each partition's offsets."""
    nowhere = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}
    delivery = pipeline(nowhere, consumer, commits, 0.5, max_uncommitted=100)
    try:
        delivery.send(records("out", 3, "a"), {(SOURCE, 0): 13}, {(SOURCE, 0): 10})
        delivery.send(records("out", 3, "b"), {(SOURCE, 0): 16, (SOURCE, 1): 4}, {(SOURCE, 0): 13, (SOURCE, 1): 2})
        deadline = time.monotonic() + 30
        with pytest.raises(PipelineFailed) as failed:
            while time.monotonic() < deadline:
                delivery.collect(timeout=0.05)
        assert failed.value.rewind == {(SOURCE, 0): 10, (SOURCE, 1): 2}
        assert not delivery.batches and not delivery.pending
        assert committed(consumer) == {0: -1001, 1: -1001}
    finally:
        delivery.close()


def test_commits_to_an_unreachable_coordinator_never_block_and_report_the_broker_down() -> None:
    """The commit path of a scorer whose broker went away right after an acknowledgement: the
    commit is sent and the caller goes on (a synchronous commit would wait for librdkafka's own
    timeouts), the broker is reported down while the commit is unconfirmed, the revocation's
    synchronous commit is skipped instead of blocking, and the failed commit stays pending."""
    nowhere = {"bootstrap.servers": f"127.0.0.1:{free_port()}", "log_level": "0"}
    commits = OffsetCommits(StreamMetrics())
    up = ("cardscore_stream_dependency_up", {"dependency": "broker"})
    consumer = Consumer({**nowhere, **commits.consumer_conf(), "group.id": f"g-{uuid.uuid4().hex}",
                         "session.timeout.ms": "1000", "heartbeat.interval.ms": "300"})
    commits.attach(consumer)
    commits.metrics.dependency_up.labels("broker").set(1)
    try:
        commits.add({(SOURCE, 0): 10})
        started = time.monotonic()
        commits.commit(force=True)
        assert time.monotonic() - started < 0.5 and commits.pending == {(SOURCE, 0): 10}
        deadline = time.monotonic() + 10
        while commits.metrics.value(*up) != 0:  # the scorer's loop: serving, never blocked
            assert time.monotonic() < deadline, "the broker was not reported down"
            commits.serve(0.05)
            commits.watch()
        assert commits.stalled() and commits.pending == {(SOURCE, 0): 10}
        started = time.monotonic()
        assert commits.commit_sync({(SOURCE, 0)}) is False  # skipped: it would wait for the coordinator
        assert time.monotonic() - started < 0.5
        # librdkafka gives up waiting for a coordinator after session.timeout.ms: a failure,
        # delivered to on_commit; the offset stays pending, to be sent again.
        deadline = time.monotonic() + 30
        while commits.metrics.value("cardscore_stream_errors_total", {"stage": "commit"}) < 1:
            assert time.monotonic() < deadline, "no commit failure reported"
            commits.serve(0.05)
        assert commits.failing and commits.pending == {(SOURCE, 0): 10} and not commits.sent
        assert not commits.is_committed((SOURCE, 0), 10)
        assert commits.metrics.value(*up) == 0
    finally:
        consumer.close()
