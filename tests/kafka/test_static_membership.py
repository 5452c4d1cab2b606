"""Static group membership on a real Apache Kafka (one node): a scorer SIGKILLed mid-replay and
restarted under the same `--instance-id` has its partitions back within a few seconds, long
before the killed member's session (the scorer's default 10 s) would have expired, and nothing
is lost; a second process under a name already in use fences the first, which exits 1. (The embedded broker's version, tests/streaming/test_restart.py, can only compare
joins: Tansu makes every join wait seconds that grow with the session timeout.)

The killed scorer is a `python -m cardscore.streaming` process with the scorer's own consumer
defaults; the restarted one runs in the test process, so it subscribes right after the kill (a
new process takes 3-16 s to import and load on this machine, as long as a session)."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import pytest
import yaml

from cardscore.core.config import Settings
from tests.streaming import world
from tests.streaming.test_delivery import Replay
from tests.streaming.test_restart import Events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SESSION_TIMEOUT_S = 10.0  # the scorer's default (streaming/polling.py CONSUMER_DEFAULTS)


def scorer_defaults(settings: Settings, config: Path) -> tuple[Settings, Path]:
    """The settings and config file without the test clients' session: the scorer's defaults."""
    consumer = {k: v for k, v in settings.kafka.consumer.items()
                if k not in ("session.timeout.ms", "heartbeat.interval.ms")}
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"consumer": consumer})})
    data = yaml.safe_load(config.read_text())
    data["kafka"]["consumer"] = consumer
    config.write_text(yaml.safe_dump(data))
    return settings, config


def test_a_killed_scorer_restarted_under_its_name_resumes_within_seconds(
    stream_settings: Settings, tmp_path: Path, spawn
) -> None:
    settings, config = scorer_defaults(stream_settings, world.write_config(stream_settings, tmp_path / "scorer.yaml"))
    records = world.transactions(3000, seed=81)
    first = spawn(config, tmp_path / "first.log", "--instance-id", "scorer-1")
    first.wait_for(lambda p: bool(p.events("stream.assigned")), 120, "the first scorer's assignment")
    subscribed = first.events("stream.subscribed")[0]
    assert (subscribed["member"], subscribed["session_timeout_ms"]) == ("static", SESSION_TIMEOUT_S * 1000)
    events = Events()
    logging.getLogger("cardscore").addHandler(events)
    try:
        with Replay(settings, records, rate=1000) as replay:
            first.wait_for(lambda p: p.scored() >= 500, 90, "500 scores")
            first.proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            assert first.proc.wait(10) == -signal.SIGKILL
            assert replay.delivered == 0, "the replay had ended: the kill was not mid-replay"
            with world.InProcessScorer(settings, instance_id="scorer-1") as second:
                second.wait_for(lambda: second.metric("cardscore_stream_assigned_partitions") == 2, 60,
                                "the restarted scorer's partitions")
                world.read_until(settings, settings.kafka.topics.scores,
                                 lambda ms: len({m.key() for m in ms}) >= len(records), timeout=120)
    finally:
        logging.getLogger("cardscore").removeHandler(events)
    resumed = events.at["stream.assigned"] - killed_at
    join = events.at["stream.assigned"] - events.at["stream.subscribed"]
    # A dynamic member would wait for the killed member's session to expire, then rebalance.
    assert resumed < SESSION_TIMEOUT_S / 2, f"partitions back {resumed:.1f}s after the kill"
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert set(scores) == {r["transaction_id"] for r in records}
    assert sum(len(v) - 1 for v in scores.values()) <= settings.streaming.batch_max_messages
    print(f"static restart on Kafka: partitions back {resumed:.1f}s after the kill (join {join:.1f}s, "
          f"session {SESSION_TIMEOUT_S:.0f}s)")


def test_a_second_scorer_under_the_same_name_fences_the_first(stream_settings: Settings, tmp_path: Path,
                                                              spawn) -> None:
    """Two processes given one --instance-id: Kafka takes the second for the first restarted and
    fences the first (a fatal error: it exits 1 instead of consuming on); the second scores."""
    config = world.write_config(stream_settings, tmp_path / "scorer.yaml")
    first = spawn(config, tmp_path / "first.log", "--instance-id", "twin")
    first.wait_for(lambda p: bool(p.events("stream.assigned")), 120, "the first scorer's assignment")
    second = spawn(config, tmp_path / "second.log", "--instance-id", "twin")
    assert first.proc.wait(120) == 1, first.log.read_text()[-2000:]
    assert any(e.get("fatal") for e in first.events("stream.consumer_error"))
    records = world.transactions(200, seed=82)
    world.produce(stream_settings, records)
    second.wait_for(lambda p: p.scored() >= len(records), 120, "the second scorer's scores")
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(30) == 0, second.log.read_text()[-2000:]
    scores = world.scores_by_id(world.read_all(stream_settings, stream_settings.kafka.topics.scores))
    assert set(scores) == {r["transaction_id"] for r in records}
