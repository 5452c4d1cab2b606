"""Restarts: a scorer killed with SIGKILL and restarted under the same `--instance-id` (a static
group member, `group.instance.id`) takes its partitions back without waiting for the killed
member's session to expire, and loses nothing.

Against the embedded broker (Tansu 0.6), which honours `group.instance.id`. Tansu answers
JoinGroup and SyncGroup only after waits that grow with the session timeout (every join, fresh
or not, costs about 8 s at the scorer's 10 s session, 13 s at 20 s), so the test compares the
restart's join with a fresh join of the same group rather than with a fixed number: a dynamic
member would first wait for the rest of the killed member's session (there: about 28 s at
20 s instead of 13 s). The killed scorer is a `python -m cardscore.streaming` process; the
restarted one runs in the test process, so it subscribes within a second or two of the kill
(a new process takes 3-16 s to import and load on this machine, as long as a session).
On Apache Kafka a static member's rejoin returns its assignment at once. Measured on Tansu at
the scorer's 10 s session: about 8 s from subscribe to assignment for a static restart, about
18 s for a dynamic one; 85 s was seen before (45 s session, dynamic).
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from cardscore.core.config import Settings
from tests.streaming import world
from tests.streaming.test_delivery import Replay

SESSION_TIMEOUT_S = 20.0  # see the module docstring


class Events(logging.Handler):
    """When each scorer log event happened, in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.at.setdefault(record.getMessage(), record.created)


def logged_at(process: world.ScorerProcess, event: str) -> float:
    """Epoch seconds of a scorer process's first `event` log line."""
    return datetime.fromisoformat(process.events(event)[0]["ts"]).timestamp()


@pytest.mark.slow  # a scorer subprocess and two joins of the embedded broker: about a minute
def test_a_killed_scorer_restarted_under_its_name_resumes_without_waiting_for_its_old_session(
    stream_settings: Settings, tmp_path: Path, spawn
) -> None:
    consumer = {**stream_settings.kafka.consumer, "session.timeout.ms": str(int(SESSION_TIMEOUT_S * 1000)),
                "heartbeat.interval.ms": "1000"}
    settings = stream_settings.model_copy(update={"kafka": stream_settings.kafka.model_copy(
        update={"consumer": consumer})})
    records = world.transactions(3000, seed=71)
    config = world.write_config(settings, tmp_path / "scorer.yaml")
    first = spawn(config, tmp_path / "first.log", "--instance-id", "scorer-1")
    first.wait_for(lambda p: bool(p.events("stream.assigned")), 90, "the first scorer's assignment")
    assert first.events("stream.subscribed")[0]["member"] == "static"
    first_join = logged_at(first, "stream.assigned") - logged_at(first, "stream.subscribed")
    events = Events()
    logging.getLogger("cardscore").addHandler(events)
    # The restarted scorer runs in this process: its warm-up freezes the heap it starts in,
    # between subscribing and its first poll. A fresh process's heap takes a fraction of a second
    # (the first scorer's did); this test worker's holds every earlier test's objects and could
    # take seconds, inside the join measured below (seen once: 23 s vs 13 s). Frozen here, before
    # the kill, as the scorer would freeze it.
    gc.collect()
    gc.freeze()
    try:
        with Replay(settings, records, rate=1000) as replay:
            first.wait_for(lambda p: p.scored() >= 500, 90, "500 scores")
            first.proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            assert first.proc.wait(10) == -signal.SIGKILL
            assert replay.delivered == 0, "the replay had ended: the kill was not mid-replay"
            with world.InProcessScorer(settings, instance_id="scorer-1") as second:
                second.wait_for(lambda: second.metric("cardscore_stream_assigned_partitions") == 2, 90,
                                "the restarted scorer's partitions")
                world.read_until(settings, settings.kafka.topics.scores,
                                 lambda ms: len({m.key() for m in ms}) >= len(records), timeout=120)
    finally:
        logging.getLogger("cardscore").removeHandler(events)
    started = events.at["stream.subscribed"] - killed_at
    join = events.at["stream.assigned"] - events.at["stream.subscribed"]
    # Subscribed while the killed member's session was alive: a dynamic member would wait for the
    # rest of it before a fresh join; the static member's join costs no more than a fresh one.
    assert started < SESSION_TIMEOUT_S / 2, f"the restart took {started:.1f}s to subscribe: too slow to tell"
    assert join <= first_join + 3.0, f"join {join:.1f}s vs a fresh join {first_join:.1f}s: not a static rejoin"
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert set(scores) == {r["transaction_id"] for r in records}
    assert sum(len(v) - 1 for v in scores.values()) <= settings.streaming.batch_max_messages
    print(f"static restart: subscribed {started:.1f}s after the kill, partitions back {started + join:.1f}s "
          f"after it (join {join:.1f}s, a fresh join {first_join:.1f}s, session {SESSION_TIMEOUT_S:.0f}s)")
