"""Brokers going away under a running scorer, on real Apache Kafka: a one-node cluster
restarted (its data on disk), and one broker of three killed (SIGKILL) mid-replay. The
scorer recovers by itself; nothing acknowledged is lost."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from cardscore.core.config import Settings
from cardscore.services.kafka_cluster import KafkaCluster
from cardscore.streaming.commits import OffsetCommits
from cardscore.streaming.metrics import StreamMetrics
from cardscore.streaming.scorer import consumer_conf
from tests.kafka.conftest import group_offsets, stream_settings_on
from tests.streaming import world
from tests.streaming.test_delivery import Replay, partition_ends

pytestmark = pytest.mark.kafka

BROKER_UP = ("cardscore_stream_dependency_up", {"dependency": "broker"})


def assert_every_event_scored(settings: Settings, records: list[dict], max_duplicates: int) -> None:
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in records)
    duplicates = {tx: v for tx, v in scores.items() if len(v) > 1}
    # a batch whose acknowledgements or commit timed out is retried whole: same key, same score
    assert sum(len(v) - 1 for v in duplicates.values()) <= max_duplicates
    assert all(len({s["score"] for s in v}) == 1 for v in duplicates.values())
    # the input is all there, and the group committed every message of it
    assert sum(partition_ends(settings).values()) == len(records)
    assert world.committed(settings, settings.streaming.group_id) == partition_ends(settings)


@pytest.mark.slow
def test_scorer_recovers_from_a_broker_restart(stream_settings: Settings, kafka1: KafkaCluster) -> None:
    """The one-node cluster stops (SIGTERM) mid-replay and starts again on the same data:
    topics, scores and the group's offsets survive, and the scorer carries on by itself."""
    # Long enough for the restarted broker to hand the idempotent producer a new epoch: with a
    # timeout shorter than that (seen at 3 s on a loaded machine) every retry times out again
    # before the epoch bump completes, and the producer never catches up.
    settings = stream_settings.model_copy(update={
        "streaming": stream_settings.streaming.model_copy(update={"delivery_timeout_seconds": 10.0})})
    records = world.transactions(2400, seed=81)
    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.metric("cardscore_stream_assigned_partitions") == 2, 60, "assignment")
        with Replay(settings, records, rate=300):  # its producer queues while the broker is away
            running.wait_for(lambda: running.totals.get("scored", 0) >= 400, 60, "400 scores")
            assert kafka1.stop()
            try:
                running.wait_for(lambda: running.metric(*BROKER_UP) == 0, 60,
                                 "the scorer noticing the broker is gone")
                scored_while_down = running.totals.get("scored", 0)
            finally:  # the session's cluster comes back whatever happened: later tests use it
                kafka1.start(timeout=120)
        world.read_until(settings, settings.kafka.topics.scores,
                         lambda ms: len({m.key() for m in ms}) >= len(records), timeout=180)
        assert scored_while_down < len(records)
        running.wait_for(lambda: running.metric(*BROKER_UP) == 1, 30, "the broker marked up again")
    assert_every_event_scored(settings, records, max_duplicates=2 * settings.streaming.batch_max_messages)


@pytest.mark.slow
def test_a_commit_sent_while_the_broker_is_down_blocks_nothing_and_lands_after_its_restart(
    stream_settings: Settings, kafka1: KafkaCluster
) -> None:
    """The moment of the old blocking-commit bug, made deterministic: offsets acknowledged,
    the one-node cluster stopped, then the scorer's commit path runs. The commit is sent
    without waiting, the broker is reported down within seconds while the consumer keeps
    being served, the revocation's synchronous commit is skipped instead of blocking; after the
    restart the same offsets are committed (confirmed through on_commit), as the broker says."""
    settings = stream_settings
    topic = settings.kafka.topics.transactions
    producer = Producer(settings.kafka_conf("producer"))
    for partition in (0, 1):
        for _ in range(3):
            producer.produce(topic, value=b"{}", partition=partition)
    assert producer.flush(30) == 0
    commits = OffsetCommits(StreamMetrics())
    up = ("cardscore_stream_dependency_up", {"dependency": "broker"})
    group = settings.streaming.group_id
    consumer = Consumer({**consumer_conf(settings, group, "probe"), **commits.consumer_conf()})
    commits.attach(consumer)
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while len(consumer.assignment()) < 2:
            assert time.monotonic() < deadline, "no assignment"
            commits.serve(0.1)
        commits.metrics.dependency_up.labels("broker").set(1)
        acknowledged = {(topic, 0): 3, (topic, 1): 3}
        assert kafka1.stop()
        try:
            commits.add(acknowledged)
            started = time.monotonic()
            commits.commit(force=True)
            assert time.monotonic() - started < 0.5
            deadline = time.monotonic() + 15
            while commits.metrics.value(*up) != 0:  # the loop goes on: nothing waits on the commit
                assert time.monotonic() < deadline, "the broker was not reported down"
                commits.serve(0.05)
                commits.commit()
            assert commits.pending == acknowledged
            started = time.monotonic()
            assert commits.commit_sync({(topic, 0), (topic, 1)}) is False
            assert time.monotonic() - started < 0.5
        finally:  # the session's cluster comes back whatever happened: later tests use it
            kafka1.start(timeout=120)
        deadline = time.monotonic() + 120
        while commits.pending:  # sent again after a failure, or confirmed once the coordinator is back
            assert time.monotonic() < deadline, f"still pending after the restart: {commits.pending}"
            commits.serve(0.1)
            commits.commit()
        assert commits.confirmed == acknowledged and commits.metrics.value(*up) == 1
        assert group_offsets(kafka1.conf, group, topic, 2) == {0: 3, 1: 3}
    finally:
        consumer.close()


@pytest.mark.slow
def test_one_broker_of_three_killed_mid_replay_loses_no_acknowledged_score(
    kafka3: KafkaCluster, stream_world
) -> None:
    """Topics replicated 3 ways with min.insync.replicas 2, the producer's acks=all: a score
    acknowledged is on two brokers at least. The broker leading the most partitions of the
    scores topic is killed mid-replay; leadership moves, the scorer carries on."""
    settings = stream_settings_on(kafka3, stream_world)
    records = world.transactions(3000, seed=82)
    metadata = AdminClient(kafka3.conf).list_topics(timeout=10).topics[settings.kafka.topics.scores]
    leaders = [p.leader for p in metadata.partitions.values()]
    victim = max(set(leaders), key=leaders.count)
    try:
        with world.InProcessScorer(settings) as running:
            running.wait_for(lambda: running.metric("cardscore_stream_assigned_partitions") == 2, 60, "assignment")
            with Replay(settings, records, rate=300):
                running.wait_for(lambda: running.totals.get("scored", 0) >= 500, 60, "500 scores")
                acknowledged = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
                assert kafka3.kill_node(victim)
            world.read_until(settings, settings.kafka.topics.scores,
                             lambda ms: len({m.key() for m in ms}) >= len(records), timeout=180)
        assert kafka3.brokers_answering() == 2
        assert len(acknowledged) >= 500
        assert_every_event_scored(settings, records, max_duplicates=4 * settings.streaming.batch_max_messages)
        # every score acknowledged before the kill is still there, unchanged
        after = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
        assert all(after[tx][0] == scores[0] for tx, scores in acknowledged.items())
    finally:
        kafka3.start_node(victim)  # the cluster is whole again for the tests after this one
