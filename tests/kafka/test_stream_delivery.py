"""The stream scorer's at-least-once guarantee, consumer-lag metric and partition growth on
a real Apache Kafka (one node), where high watermarks, committed offsets and CreatePartitions
are the real thing (the embedded broker gets them wrong or lacks them)."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions
from prometheus_client.parser import text_string_to_metric_families

from cardscore.core.config import Settings
from cardscore.schemas.serialization import transaction_event_line
from tests.kafka.conftest import end_offsets, group_offsets
from tests.streaming import world
from tests.streaming.test_delivery import partition_ends

# The embedded-broker crash test, run unchanged on Apache Kafka (`broker` is Kafka here):
# SIGKILL mid-replay, restart; nothing lost, duplicates only from the uncommitted window,
# with the same key and the same score.
from tests.streaming.test_delivery import (
    test_sigkill_mid_replay_then_restart_scores_every_event as test_at_least_once_survives_sigkill_on_kafka,  # noqa: F401
)

pytestmark = pytest.mark.kafka


def scraped_lag(port: int) -> dict[int, float]:
    """cardscore_stream_consumer_lag per partition, from the scorer's /metrics over HTTP."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {int(sample.labels["partition"]): sample.value
            for family in text_string_to_metric_families(body) if family.name == "cardscore_stream_consumer_lag"
            for sample in family.samples}


def broker_lag(settings: Settings, partitions: int = 2) -> dict[int, int]:
    """What the broker says: high watermark minus the group's committed offset."""
    conf, topic = settings.kafka_conf(), settings.kafka.topics.transactions
    high = end_offsets(conf, topic, partitions)
    committed = group_offsets(conf, settings.streaming.group_id, topic, partitions)
    return {p: high[p] - max(committed[p], 0) for p in range(partitions)}


def test_consumer_lag_metric_equals_high_watermark_minus_committed_offset(
    stream_settings: Settings, stream_world, tmp_path: Path
) -> None:
    """Lag is 0 when caught up, exactly the unprocessed messages per partition while the
    online store is broken (nothing is committed, nothing produced), 0 again after repair."""
    online = tmp_path / "online.db"  # this test breaks its own copy of the online store
    shutil.copy(stream_world.home / "feast" / "online.db", online)
    settings = stream_settings.model_copy(update={
        "feast": stream_settings.feast.model_copy(update={"sqlite_path": str(online)}),
        "streaming": stream_settings.streaming.model_copy(update={"lag_interval_seconds": 0.2}),
        # read the store per batch: the default snapshot reader would keep scoring from memory
        "features": stream_settings.features.model_copy(update={"online_reader": "direct"}),
    })
    records = world.transactions(500, seed=51)
    with world.InProcessScorer(settings) as running:
        port = running.scorer.metrics.serve(0)
        world.produce(settings, records[:200])
        running.wait_for(lambda: running.totals.get("scored", 0) == 200, 60, "the first 200 scores")
        running.wait_for(lambda: scraped_lag(port) == {0: 0, 1: 0}, 30, "lag 0 when caught up")
        assert broker_lag(settings) == {0: 0, 1: 0}

        original = online.read_bytes()
        with open(online, "r+b") as db:
            db.write(b"\0" * 100)
        world.produce(settings, records[200:])
        running.wait_for(lambda: running.metric("cardscore_stream_retries_total", {"stage": "lookup"}) >= 2,
                         60, "failing lookups")
        running.wait_for(lambda: sum(scraped_lag(port).values()) == 300, 30, "the lag of 300 waiting messages")
        expected = broker_lag(settings)
        assert sum(expected.values()) == 300 and min(expected.values()) > 0  # both partitions lag
        assert scraped_lag(port) == expected

        with open(online, "r+b") as db:
            db.write(original[:100])
        running.wait_for(lambda: running.totals.get("scored", 0) == 500, 60, "the rest after the repair")
        running.wait_for(lambda: scraped_lag(port) == {0: 0, 1: 0}, 30, "lag back to 0")
        assert broker_lag(settings) == {0: 0, 1: 0}


def test_partitions_added_while_scoring_are_scored(stream_settings: Settings) -> None:
    """The transactions topic grows from 2 to 4 partitions mid-stream (CreatePartitions);
    the scorer's default metadata refresh (10 s) finds them, a cooperative rebalance assigns
    them, and the messages already waiting there are scored: nothing lost, nothing twice."""
    settings = stream_settings
    topic = settings.kafka.topics.transactions
    records = world.transactions(900, seed=61)
    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.metric("cardscore_stream_assigned_partitions") == 2, 60, "assignment")
        world.produce(settings, records[:300])
        running.wait_for(lambda: running.totals.get("scored", 0) == 300, 60, "300 scores on 2 partitions")
        admin = AdminClient(settings.kafka_conf())
        admin.create_partitions([NewPartitions(topic, 4)])[topic].result(30)
        # straight into the new partitions, before the scorer knows they exist
        producer = Producer({**settings.kafka_conf("producer"), "enable.idempotence": "true"})
        for i, record in enumerate(records[300:600]):
            producer.produce(topic, transaction_event_line(record), str(record["customer_id"]).encode(),
                             partition=2 + i % 2)
        producer.flush(30)
        world.produce(settings, records[600:])  # keyed: spread over all four partitions
        running.wait_for(lambda: running.metric("cardscore_stream_assigned_partitions") == 4, 60,
                         "the new partitions assigned")
        running.wait_for(lambda: running.totals.get("scored", 0) == len(records), 60, "every score")
        assert running.metric("cardscore_stream_rebalance_events_total", {"kind": "revoked"}) == 0

    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in records)
    assert all(len(v) == 1 for v in scores.values())
    wider = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"partitions": 4})})
    ends = partition_ends(wider)
    assert set(ends) == {0, 1, 2, 3}  # every partition got messages
    assert world.committed(wider, settings.streaming.group_id) == ends
