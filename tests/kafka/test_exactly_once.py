"""Exactly-once on a real Apache Kafka: the scorer (`python -m cardscore.streaming --delivery
exactly_once`) is SIGKILLed inside open transactions, several times during one replay, and
restarted with the same instance id each time (its transactional.id fences the dead one and
aborts its transaction). A read_committed reader then sees every valid transaction's score
exactly once, every rejected message's DLQ record exactly once, and none of the records of
the aborted transactions, which a read_uncommitted reader proves were written."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import IsolationLevel

from cardscore.core.config import Settings
from cardscore.streaming import dlq
from tests.kafka.conftest import end_offsets, read_committed
from tests.streaming import world
from tests.streaming.test_delivery import Replay, partition_ends

pytestmark = pytest.mark.kafka

KILLS = 3
INSTANCE = "eos-1"


def open_transaction_written(settings: Settings) -> bool:
    """True when some partition of the scores or DLQ topic holds records of a transaction
    still open: its last stable offset is behind its high watermark."""
    conf = settings.kafka_conf()
    for topic in (settings.kafka.topics.scores, settings.kafka.topics.dlq):
        written = end_offsets(conf, topic, settings.kafka.partitions)
        stable = end_offsets(conf, topic, settings.kafka.partitions, IsolationLevel.READ_COMMITTED)
        if any(stable[p] < written[p] for p in written):
            return True
    return False


def kill_inside_a_transaction(proc: subprocess.Popen[bytes], settings: Settings, attempts: int = 300) -> None:
    """Freeze the scorer (SIGSTOP); if it is inside a transaction whose records reached the
    broker, SIGKILL it there, else let it run on and try again."""
    for _ in range(attempts):
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            inside = open_transaction_written(settings)
        finally:
            if not inside:
                os.kill(proc.pid, signal.SIGCONT)
        if inside:
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
            return
        try:  # let it run a little before freezing it again
            proc.wait(0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the scorer exited ({proc.returncode}) before it could be killed")
    raise AssertionError("never caught the scorer inside a transaction")


@pytest.mark.slow
def test_sigkill_inside_transactions_loses_nothing_and_duplicates_nothing(
    stream_settings: Settings, tmp_path: Path, spawn
) -> None:
    settings = stream_settings
    records = world.transactions(4000, seed=71)
    for record in records[::40]:  # one in 40 breaks the contract: a DLQ record
        record["amount"] = -1.0
    invalid = {r["transaction_id"] for r in records if r["amount"] < 0}
    valid = {r["transaction_id"] for r in records} - invalid
    config = world.write_config(settings, tmp_path / "scorer.yaml", {"delivery": "exactly_once"})

    scorer = spawn(config, tmp_path / "scorer-0.log", "--instance-id", INSTANCE)
    scorer.wait_for(lambda p: bool(p.events("stream.assigned")), 90, "the first scorer's assignment")
    with Replay(settings, records, rate=100) as replay:
        for kill in range(KILLS):
            scorer.wait_for(lambda p: p.scored() >= 50, 90, f"scorer {kill} scoring")
            kill_inside_a_transaction(scorer.proc, settings)
            if kill == 0:
                assert replay.delivered == 0, "the replay had ended: the kills were not mid-replay"
            # the same transactional.id: it fences the killed one and aborts its transaction
            idle_exit = ("--idle-exit", "2") if kill == KILLS - 1 else ()
            scorer = spawn(config, tmp_path / f"scorer-{kill + 1}.log", "--instance-id", INSTANCE, *idle_exit)
    assert scorer.proc.wait(180) == 0, scorer.log.read_text()[-3000:]  # drained the replay, then idle

    committed_view = read_committed(settings)
    scores = world.read_all(committed_view, settings.kafka.topics.scores)
    dead = world.read_all(committed_view, settings.kafka.topics.dlq)
    per_tx = Counter(int(m.key()) for m in scores)
    assert set(per_tx) == valid  # every valid transaction scored...
    assert set(per_tx.values()) == {1}  # ...exactly once: no record of an aborted transaction
    sources = Counter((dlq.header(m.headers(), "dlq.source.partition"), dlq.header(m.headers(), "dlq.source.offset"))
                      for m in dead)
    assert len(sources) == len(invalid) and set(sources.values()) == {1}
    assert {int(m.value().split(b",")[0].split(b":")[1]) for m in dead} == invalid

    # The aborted transactions' records are in the log: read_uncommitted sees them.
    uncommitted_view = read_committed(settings, False)
    everything = len(world.read_all(uncommitted_view, settings.kafka.topics.scores)) + len(
        world.read_all(uncommitted_view, settings.kafka.topics.dlq))
    assert everything - len(scores) - len(dead) >= KILLS
    # The offsets went with the transactions: the group has committed every message.
    assert world.committed(settings, settings.streaming.group_id) == partition_ends(settings)
    print(f"records of aborted transactions: {everything - len(scores) - len(dead)}")
