"""The streaming fresh-feature pipeline over a real broker (the embedded one, over TCP), a real
lake (Sail, Delta) and the real Feast online store (SQLite): a day replayed after the lake's
last day, through the card step and the terminal step, leaves in the store exactly the events
one state fed the lake's look-back and the day holds, for every card and terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from cardscore.core.config import Settings
from cardscore.features.fresh import Entity
from cardscore.features.fresh_history import lake_history, lookback_days
from cardscore.features.fresh_store import FreshEventsStore
from cardscore.features.store import feature_store
from cardscore.services.broker import create_topics
from cardscore.simulator.kafka import replay_day
from cardscore.streaming.fresh_pipeline import FreshStepRunner, partition_of
from tests.fresh_stream.world import DAY, run_until, whole_state
from tests.streaming.world import produce, read_all, write_config
from tests.support.readme import REPO, bash_block

FEATURES_README = REPO / "features" / "README.md"

def test_a_streamed_day_leaves_the_events_of_one_whole_state_in_the_store(streamed_world) -> None:
    """... and a transaction and a label report from 2199 (valid by their contracts) ahead of
    the day are rejected, not let loose on the state's clocks (they would evict the card's and
    the whole step's history)."""
    settings, world, lake = streamed_world
    known = world.transactions.iloc[-1]
    future = "2199-01-01T00:00:00Z"
    hostile = [
        (settings.kafka.topics.transactions, {"transaction_id": 10**12, "customer_id": int(known.customer_id),
                                              "terminal_id": int(known.terminal_id), "amount": 5.0, "event_time": future}),
        (settings.kafka.topics.labels, {"transaction_id": 10**12 + 1, "is_fraud": True, "reported_time": future}),
    ]
    for topic, record in hostile:
        produce(settings, [(str(int(known.customer_id)).encode(), json.dumps(record).encode())], topic=topic)
    replayed = replay_day(settings, DAY)
    assert replayed.transactions > 50 and replayed.labels > 0
    store = FreshEventsStore(feature_store(settings))

    card = FreshStepRunner(settings, "card", store, history=lake_history(lake, Entity.CARD))
    run_until(card, lambda r: r.transactions + r.labels >= replayed.transactions + replayed.labels)
    terminal = FreshStepRunner(settings, "terminal", store, history=lake_history(lake, Entity.TERMINAL))
    run_until(terminal, lambda r: r.messages >= card.report.forwards)
    assert card.report.rejected == {"outside_window": 2} and terminal.report.rejected == {}
    assert card.report.bootstrapped > 0 and terminal.report.bootstrapped > 0
    assert card.report.forwards >= replayed.transactions  # every transaction, and the verdicts it can place
    # Freshness is measured for every event made visible (the terminal's from the original message).
    for runner, count in ((card, card.report.transactions + card.report.labels), (terminal, terminal.report.messages)):
        visible = runner.metrics.registry.get_sample_value("cardscore_fresh_visible_seconds_count", {"step": runner.kind})
        assert visible == count > 0

    assert_store_holds_one_whole_state(store, world)


def assert_store_holds_one_whole_state(store: FreshEventsStore, world) -> None:
    first = DAY - timedelta(days=1) - timedelta(days=lookback_days(Entity.CARD))
    whole = whole_state(world, first)
    checked = {Entity.CARD: 0, Entity.TERMINAL: 0}
    day_tx = world.transactions[world.transactions["event_time"].dt.date == DAY]
    for entity, column in ((Entity.CARD, "customer_id"), (Entity.TERMINAL, "terminal_id")):
        keys = sorted(int(k) for k in day_tx[column].unique())
        stored = store.read(entity, keys)
        assert set(stored) == set(keys)  # every entity of the day was written
        for key in keys:
            want = whole.entity_events(entity, key)
            got = stored[key]
            assert (got.transactions, got.verdicts, got.newest_us) == (want.transactions, want.verdicts, want.newest_us)
            checked[entity] += 1
    assert checked[Entity.CARD] > 20 and checked[Entity.TERMINAL] > 20
    # Some verdicts reached the terminals through the repartition topic (the lift of the model).
    assert any(e.verdicts for e in store.read(Entity.TERMINAL, range(200)).values())


def test_partition_of_is_the_producers_partitioner(kafka_settings: Settings) -> None:
    """The bootstrap picks entities with `partition_of`; it must be where the replay's producer
    (librdkafka's default partitioner) put each key."""
    from confluent_kafka import Producer

    settings = kafka_settings
    create_topics(settings.kafka_conf(), {settings.kafka.topics.transactions: 5})
    producer = Producer(settings.kafka_conf("producer"))
    placed: dict[int, int] = {}
    for key in range(200):
        producer.produce(settings.kafka.topics.transactions, b"{}", str(key).encode(),
                         on_delivery=lambda err, msg, k=key: placed.__setitem__(k, msg.partition()))
    assert producer.flush(30) == 0
    assert placed == {k: partition_of(k, 5) for k in range(200)}


def test_a_card_step_killed_mid_day_restarts_into_the_same_state(streamed_world, tmp_path) -> None:
    """`cardscore fresh-stream card` as a process (the command of features/README.md),
    SIGKILLed while the day is being replayed, then started again: it rebuilds its state from
    the lake and its partitions, goes on, and after `cardscore fresh-stream terminal` the store
    ends exactly as without the kill (no transaction or verdict lost or counted twice, though
    the uncommitted batch's forwards were produced twice)."""
    settings, world, _lake = streamed_world
    config = write_config(settings, tmp_path / "fresh.yaml")
    group = settings.fresh_stream.card_group_id
    topics = (settings.kafka.topics.transactions, settings.kafka.topics.labels)

    def committed_total(group: str, topics: tuple[str, ...]) -> int:
        consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": group})
        try:
            found = consumer.committed([TopicPartition(t, p) for t in topics for p in range(settings.kafka.partitions)],
                                       timeout=10)
            return sum(max(tp.offset, 0) for tp in found)
        finally:
            consumer.close()

    replay = threading.Thread(target=replay_day, args=(settings, DAY), kwargs={"rate": 20.0}, daemon=True)
    first = start_step(config, tmp_path / "first.log", "card")
    wait_until(lambda: '"fresh_stream.bootstrapped"' in (tmp_path / "first.log").read_text(), first, 120,
               "the step has its partitions and its history")
    replay.start()  # ~8 s of messages: the kill comes in the middle
    wait_until(lambda: committed_total(group, topics) > 20, first, 120, "the first batches are committed")
    first.kill()
    first.wait(30)
    replay.join(60)
    assert not replay.is_alive()
    total = sum(len(read_all(settings, t)) for t in topics)
    assert committed_total(group, topics) < total  # killed mid-day: the rest was left to the restart

    second = start_step(config, tmp_path / "second.log", "card")
    wait_until(lambda: committed_total(group, topics) == total, second, 120, "the whole day is committed")
    second.terminate()
    assert second.wait(60) == 0
    log = (tmp_path / "second.log").read_text()
    assert '"fresh_stream.bootstrapped"' in log and '"replayed": 0' not in log  # rebuilt: re-read what was committed

    forwards = (settings.kafka.topics.fresh_forwards,)
    produced = len(read_all(settings, forwards[0]))
    terminal = start_step(config, tmp_path / "terminal.log", "terminal")
    wait_until(lambda: committed_total(settings.fresh_stream.terminal_group_id, forwards) == produced, terminal, 120,
               "the terminal step committed every forward")
    terminal.terminate()
    assert terminal.wait(60) == 0
    store = FreshEventsStore(feature_store(settings))
    assert_store_holds_one_whole_state(store, world)


def start_step(config: Path, log: Path, step: str) -> subprocess.Popen:
    """The step's command as features/README.md writes it, configured by $CARDSCORE_CONFIG."""
    [command] = [line.split("#")[0].strip() for line in bash_block("cardscore fresh-stream", FEATURES_README).splitlines()
                 if line.startswith(f"cardscore fresh-stream {step}")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE")}
    env |= {"CARDSCORE_CONFIG": str(config), "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    with open(log, "ab") as handle:
        return subprocess.Popen(["bash", "-c", f"exec {command}"], stdout=handle, stderr=subprocess.STDOUT, env=env)


def wait_until(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the step exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling the group's committed offsets for a condition, not synchronising on time
