"""`cardscore stream`, `python -m cardscore.streaming`, `cardscore dlq show|replay` through the real
entry points, and the scorer's Prometheus endpoint over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Message
from typer.testing import CliRunner

import cardscore.cli  # noqa: F401  (registers every command on the app)
from cardscore.cli.app import app
from cardscore.schemas.contracts import TRANSACTION_EVENT
from cardscore.schemas.validation import validate_bytes
from cardscore.services.broker import free_port
from cardscore.streaming import dlq
from cardscore.streaming.dlq_replay import REPLAYS_HEADER
from cardscore.streaming.messages import split_messages
from tests.corpus import GOOD
from tests.streaming import world

ROOT = Path(__file__).resolve().parents[2]


def test_help_of_both_entry_points() -> None:
    result = CliRunner().invoke(app, ["stream", "--help"])
    assert result.exit_code == 0
    for option in ("--group-id", "--instance-id", "--batch-size", "--delivery", "--metrics-port", "--idle-exit"):
        assert option in result.output
    assert "SIGTERM" in result.output
    for command in (["dlq", "--help"], ["dlq", "show", "--help"], ["dlq", "replay", "--help"]):
        assert CliRunner().invoke(app, command).exit_code == 0
    module = subprocess.run([sys.executable, "-m", "cardscore.streaming", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert module.returncode == 0 and "--instance-id" in module.stdout and "--idle-exit" in module.stdout


def test_bad_configuration_exits_with_usage_code(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("streaming:\n  batch_max_messages: 0\n")
    module = subprocess.run([sys.executable, "-m", "cardscore.streaming", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert module.returncode == 2 and "batch_max_messages" in module.stderr


def test_the_uncommitted_window_holds_at_least_one_batch() -> None:
    from cardscore.core.config import ConfigError, load_settings

    assert load_settings(environ={}).streaming.max_uncommitted == load_settings(environ={}).streaming.batch_max_messages
    wide = load_settings(environ={}, overrides={"streaming": {"batch_max_messages": 500,
                                                              "max_uncommitted_messages": 2000}})
    assert wide.streaming.max_uncommitted == 2000
    with pytest.raises(ConfigError, match="max_uncommitted_messages must be >= batch_max_messages"):
        load_settings(environ={}, overrides={"streaming": {"batch_max_messages": 500, "max_uncommitted_messages": 100}})


def dlq_records(settings, items: list[tuple[bytes, bytes, str]]) -> None:
    """Write DLQ records as the scorer does: original message + dlq.* headers."""
    from confluent_kafka import Producer

    producer = Producer(settings.kafka_conf("producer"))
    for offset, (key, value, reason) in enumerate(items):
        original = Message(topic=settings.kafka.topics.transactions, partition=0, offset=offset, key=key,
                           value=value, headers=[("content-type", b"application/json")], timestamp=(1, 5))
        rejected = split_messages([original], 10)  # any limit: only the Rejected wrapper is used
        record = dlq.dlq_record(rejected.rejected[0].__class__(original, _reason(reason), "test"), "tests", 0)
        producer.produce(settings.kafka.topics.dlq, key=record.key, value=record.value, headers=record.headers)
    assert producer.flush(30) == 0


def _reason(name: str):
    from cardscore.schemas.reasons import RejectReason

    return RejectReason(name)


def test_dlq_show_and_replay_after_a_fix(stream_settings, tmp_path: Path) -> None:
    settings = stream_settings
    config = world.write_config(settings, tmp_path / "cardscore.yaml")
    fixed = json.dumps({**GOOD, "transaction_id": 4242}).encode()  # rejected by an older rule; valid now
    still_bad = b"{broken"
    assert isinstance(validate_bytes(fixed, TRANSACTION_EVENT), dict)
    dlq_records(settings, [(b"3", fixed, "out_of_range"), (b"9", still_bad, "malformed_json")])
    runner = CliRunner()

    shown = runner.invoke(app, ["--config", str(config), "dlq", "show"])
    assert shown.exit_code == 0, shown.output
    assert "2 records" in shown.output and "out_of_range" in shown.output and "malformed_json" in shown.output
    assert "broken" not in shown.output  # metadata only

    dry = runner.invoke(app, ["--config", str(config), "dlq", "replay", "--dry-run"])
    assert dry.exit_code == 0 and "would replay 2" in dry.output
    done = runner.invoke(app, ["--config", str(config), "dlq", "replay"])
    assert done.exit_code == 0 and "replayed 2" in done.output, done.output
    again = runner.invoke(app, ["--config", str(config), "dlq", "replay"])
    assert again.exit_code == 0 and "replayed 0" in again.output  # a rerun replays nothing twice

    replayed = world.read_all(settings, settings.kafka.topics.transactions)
    assert sorted(m.value() for m in replayed) == sorted([fixed, still_bad])
    for message in replayed:  # the upstream's message again, plus the replay count
        assert message.headers() == [("content-type", b"application/json"), (REPLAYS_HEADER, b"1")]

    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.totals.get("messages", 0) >= 2, 60, "the replayed records")
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert list(scores) == [4242]
    dead = world.read_all(settings, settings.kafka.topics.dlq)
    assert (len(dead) == 3 and dlq.header(dead[-1].headers(), REPLAYS_HEADER) == "1") or any(
        dlq.header(m.headers(), REPLAYS_HEADER) == "1" and m.value() == still_bad for m in dead
    )


def test_metrics_endpoint_serves_the_scorer_metrics(stream_settings) -> None:
    settings = stream_settings
    port = free_port()
    records = world.transactions(120, seed=41)
    world.produce(settings, records)
    world.produce(settings, [(b"x", b"[1]")])
    with world.InProcessScorer(settings) as running:
        running.scorer.metrics.serve(port)
        running.wait_for(lambda: running.totals.get("messages", 0) >= 121, 60, "every message")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines()
               if line and not line.startswith("#")}
    assert samples["cardscore_stream_messages_in_total"] == 121
    assert samples["cardscore_stream_scores_out_total"] == 120
    assert samples['cardscore_stream_dlq_messages_total{reason="not_an_object"}'] == 1
    assert samples['cardscore_stream_model_info{name="cardscore-fraud",version="1"}'] == 1
    assert samples["cardscore_stream_assigned_partitions"] == 2
    assert samples['cardscore_stream_end_to_end_latency_seconds_count{clock="kafka_timestamp"}'] == 120
    assert samples['cardscore_stream_end_to_end_latency_seconds_count{clock="event_time"}'] == 120
    for name in ("batch_size", "scoring_latency_seconds", "online_lookup_latency_seconds",
                 "delivery_latency_seconds", "batch_latency_seconds"):
        assert samples[f"cardscore_stream_{name}_count"] >= 1, name
    assert samples['cardscore_stream_dependency_up{dependency="online_store"}'] == 1
    # every produced batch went through the window's room check, then the producer
    produced = samples['cardscore_stream_stage_latency_seconds_count{stage="produce"}']
    assert produced >= 1 and samples['cardscore_stream_stage_latency_seconds_count{stage="room"}'] == produced
    # the full collection that froze the start-up heap, before the first message
    assert samples['cardscore_stream_gc_pause_seconds_count{generation="2"}'] >= 1


def test_cardscore_stream_scores_until_idle(stream_settings, tmp_path: Path) -> None:
    import signal

    settings = stream_settings
    config = world.write_config(settings, tmp_path / "cardscore.yaml")
    records = world.transactions(80, seed=42)
    world.produce(settings, records)
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    try:  # the command installs its drain-on-signal handlers in this (main) thread
        result = CliRunner().invoke(app, ["--config", str(config), "stream", "--idle-exit", "1", "--batch-size", "20"])
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert result.exit_code == 0, result.output
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in records)
