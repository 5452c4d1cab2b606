"""Fresh-feature freshness benchmark: `python -m bench fresh_stream [--rate 2000] [--runs 3] [--smoke]`.

Issue 19's online target: an event is visible to the next scoring request within p99 <= 1 s at
2,000 events/s (--rates, default 1000 and 2000, interleaved run by run). On a broker of its own (--broker embedded: Tansu; kafka: a one-node Apache
Kafka from `make jars`) and a simulated world at the handbook's density (5,000 cards, 10,000
terminals; --days days, the last --streamed-days of them streamed, the ones before written as
silver Delta tables), each run:

1. starts `cardscore fresh-stream card` and `cardscore fresh-stream terminal` as processes
   (the README's commands), each with its /metrics; each loads its partitions' 30 days from
   the lake at start (not measured);
2. sends the streamed days' transactions and label reports, in time order as `cardscore
   replay` orders them, keyed by card, on an open-loop schedule at a rate of messages/s (one
   producer, created and warmed before the run);
3. waits until both groups committed everything, then reads the steps' histograms:
   `cardscore_fresh_visible_seconds{step="card"}` (a transaction or report's message
   timestamp -> its card's events written to the online store) and `{step="terminal"}` (the
   same original timestamp -> its terminal's events written: end to end through the
   repartition topic). p50/p90/p99 are interpolated within the histogram's buckets, as
   Prometheus' `histogram_quantile` does.

Baseline, measured in the same run on the same messages: a plain consumer of the two input
topics (no processing) recording when each message reaches it after its timestamp: the
broker's own delivery, the floor every consumer pays. Medians of --runs runs; ratios to the
baseline. Results: bench/results/fresh_stream.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.common import REPO_DIR, write_result
from bench.histograms import bucket_quantile, scrape_histograms
from bench.stream import LOW_LATENCY_CONSUMER, LOW_LATENCY_PRODUCER, running_broker

if str(REPO_DIR) not in sys.path:  # the silver helpers live with the tests (as bench.fresh uses them)
    sys.path.insert(0, str(REPO_DIR))

PARTITIONS = 4


def _settings(home: Path, bootstrap: str, suffix: str):
    from cardscore.core.config import load_settings

    return load_settings(overrides={
        "home": str(home),
        "kafka": {"mode": "external", "client": {"bootstrap.servers": bootstrap}, "partitions": PARTITIONS,
                  "consumer": dict(LOW_LATENCY_CONSUMER), "producer": dict(LOW_LATENCY_PRODUCER),
                  "topics": {"transactions": f"tx-{suffix}", "labels": f"labels-{suffix}",
                             "scores": f"scores-{suffix}", "dlq": f"dlq-{suffix}",
                             "fresh_forwards": f"fresh-{suffix}"}},
        "fresh_stream": {"card_group_id": f"card-{suffix}", "terminal_group_id": f"terminal-{suffix}"},
        "logging": {"format": "json", "level": "INFO"},
    })


def _config(settings, path: Path) -> Path:
    data = {
        "home": str(settings.home_path),
        "kafka": {"mode": "external", "client": dict(settings.kafka.client), "partitions": settings.kafka.partitions,
                  "consumer": dict(settings.kafka.consumer), "producer": dict(settings.kafka.producer),
                  "topics": settings.kafka.topics.model_dump()},
        "fresh_stream": settings.fresh_stream.model_dump(),
        "logging": {"format": "json", "level": "INFO"},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def streamed_messages(settings, world, days: list) -> list[Any]:
    """The days' replay sequences (`simulator.kafka.replay_messages`), one after the other."""
    from cardscore.simulator.kafka import replay_messages

    out: list[Any] = []
    for day in days:
        messages, _report = replay_messages(settings, day)
        out += messages
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cardscore(config: Path, argv: list[str], log: Path) -> subprocess.Popen:
    """`cardscore <argv>` as a process configured by $CARDSCORE_CONFIG, its output in `log`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE")}
    env["CARDSCORE_CONFIG"] = str(config)
    cardscore = Path(sys.executable).with_name("cardscore")
    with open(log, "ab") as out:
        return subprocess.Popen([str(cardscore), *argv], stdout=out, stderr=subprocess.STDOUT, cwd=REPO_DIR, env=env)


def start_step(config: Path, step: str, port: int, log: Path) -> subprocess.Popen:
    return start_cardscore(config, ["fresh-stream", step, "--metrics-port", str(port)], log)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process, then wait for each (SIGKILL after 60 s)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def load_producer(bootstrap: str):
    """The benchmark's one load producer (idempotent, low-latency settings)."""
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, **LOW_LATENCY_PRODUCER, "enable.idempotence": "true",
                     "acks": "all"})


def wait_for(condition, what: str, procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a step exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)  # polling a condition, not synchronising on time


def committed(settings, group: str, topics: list[str]) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": group})
    try:
        found = consumer.committed([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


def end_offsets(settings, topics: list[str]) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": f"bench-ends-{uuid.uuid4().hex}"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                   for t in topics for p in range(PARTITIONS))
    finally:
        consumer.close()


class DeliveryProbe:
    """The baseline: a plain consumer of the input topics, recording each message's delay
    from its timestamp to its arrival here."""

    def __init__(self, settings, topics: list[str], expected: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": f"bench-probe-{uuid.uuid4().hex}",
                                  "enable.auto.commit": "false"})
        self.consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS)])
        self.expected = expected
        self.delays_ms: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        while len(self.delays_ms) < self.expected and time.monotonic() < deadline:
            for m in self.consumer.consume(500, 0.05):
                if m.error() is None:
                    _kind, stamp = m.timestamp()
                    self.delays_ms.append(time.time() * 1000.0 - stamp)
        self.consumer.close()


def paced_send(producer, messages: list[Any], rate: float) -> None:
    """Open loop: message i is produced at t0 + i/rate, whatever happened to the ones before."""
    start = time.perf_counter()
    sent, n = 0, len(messages)
    while sent < n:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            m = messages[sent]
            while True:
                try:
                    producer.produce(m.topic, value=m.value, key=m.key, headers=list(m.headers))
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
        if sent < n:
            wait = start + sent / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # until the next message is due (the schedule, not a sync)
    if producer.flush(60):
        raise RuntimeError("load producer: messages unacknowledged after 60 s")


def histogram_quantiles(url: str, name: str, step: str) -> dict[str, float | None]:
    found = scrape_histograms(url).get((name, (("step", step),)), {})
    bounds = sorted(found)
    counts = [found[b] for b in bounds]
    if not counts or counts[-1] <= 0:
        return {"count": 0}
    return {"count": counts[-1], **{f"p{q}_ms": bucket_quantile(bounds, counts, q / 100) for q in (50, 90, 99)}}


def one_run(home: Path, bootstrap: str, world, days: list, rate: float, work: Path, producer) -> dict[str, Any]:
    from cardscore.services.broker import create_topics, project_topics

    suffix = uuid.uuid4().hex[:8]
    settings = _settings(home, bootstrap, suffix)
    create_topics(settings.kafka_conf(), project_topics(settings))
    config = _config(settings, work / f"config-{suffix}.yaml")
    messages = streamed_messages(settings, world, days)
    inputs = [settings.kafka.topics.transactions, settings.kafka.topics.labels]
    ports = {"card": _free_port(), "terminal": _free_port()}
    logs = {step: work / f"{step}-{suffix}.log" for step in ports}
    procs = {step: start_step(config, step, ports[step], logs[step]) for step in ports}
    try:
        wait_for(lambda: all('"fresh_stream.bootstrapped"' in logs[s].read_text() for s in logs),
                 "both steps loaded their history", list(procs.values()), 600)
        # warm the producer's metadata for the run's topics (no measured message waits for it)
        for topic in inputs:
            producer.list_topics(topic, timeout=10)
        probe = DeliveryProbe(settings, inputs, len(messages))
        started = time.perf_counter()
        paced_send(producer, messages, rate)
        send_s = time.perf_counter() - started
        wait_for(lambda: committed(settings, settings.fresh_stream.card_group_id, inputs) >= len(messages),
                 "the card step committed every message", list(procs.values()), 600)
        forwards = end_offsets(settings, [settings.kafka.topics.fresh_forwards])
        wait_for(lambda: committed(settings, settings.fresh_stream.terminal_group_id,
                                   [settings.kafka.topics.fresh_forwards]) >= forwards,
                 "the terminal step committed every forward", list(procs.values()), 600)
        probe.thread.join(60)
        result = {
            "messages": len(messages),
            "forwards": forwards,
            "offered_rate": rate,
            "achieved_send_rate": round(len(messages) / send_s, 1),
            "card": histogram_quantiles(f"http://127.0.0.1:{ports['card']}/metrics", "cardscore_fresh_visible_seconds", "card"),
            "terminal": histogram_quantiles(f"http://127.0.0.1:{ports['terminal']}/metrics",
                                            "cardscore_fresh_visible_seconds", "terminal"),
            "batches": {step: histogram_quantiles(f"http://127.0.0.1:{ports[step]}/metrics",
                                                  "cardscore_fresh_batch_seconds", step) for step in ports},
        }
        delays = np.asarray(probe.delays_ms)
        result["baseline_delivery"] = {"count": int(delays.size), **{
            f"p{q}_ms": round(float(np.percentile(delays, q)), 2) for q in (50, 90, 99)}} if delays.size else {}
        return result
    finally:
        stop_all(list(procs.values()))


def world_arguments(parser: argparse.ArgumentParser, name: str, days_help: str) -> None:
    """The options the fresh-stream benchmarks share: --broker, --days, --keep, --smoke."""
    parser.add_argument("--broker", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--days", type=int, default=35, help=days_help)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) for a look")
    parser.add_argument("--smoke", "--quick", action="store_true",
                        help=f"a small world (300 cards, 600 terminals); results go to {name}.smoke.json")


def world_parameters(days: int, smoke: bool):
    """The handbook's density (5,000 cards, 10,000 terminals), or a small world for --smoke."""
    from cardscore.core.config.simulator import SimulatorSettings

    return (SimulatorSettings(n_customers=300, n_terminals=600, n_days=days) if smoke
            else SimulatorSettings(n_days=days))


def silver_until(world, last, lake, work: Path) -> None:
    """The world's transactions and label reports up to day `last` as silver Delta tables."""
    from bench.fresh import write_silver

    tx, labels = world.transactions, world.labels
    part = type("LakeWorld", (), {})()
    part.transactions = tx[pd.to_datetime(tx["event_time"], utc=True).dt.date <= last]
    part.labels = labels[pd.to_datetime(labels["reported_time"], utc=True).dt.date <= last]
    write_silver(part, lake, work)


def streamed_world(params, streamed_days: int, home: Path, work: Path):
    """A simulated world in the landing files, its days before the last `streamed_days` in the
    lake, the Feast repo applied; (world, the streamed days, settings)."""
    from cardscore.core.config import load_settings
    from cardscore.core.engine import get_spark, stop_spark
    from cardscore.core.lake import Lake
    from cardscore.features.store import apply
    from cardscore.simulator import generate_world
    from cardscore.simulator.landing import write_landing

    world = generate_world(params)
    first_streamed = params.start_date + timedelta(days=params.n_days - streamed_days)
    days = [first_streamed + timedelta(days=i) for i in range(streamed_days)]
    settings = load_settings(overrides={"home": str(home)})
    write_landing(world, settings.landing_root)
    silver_until(world, first_streamed - timedelta(days=1), Lake(get_spark(settings), settings), work)
    stop_spark()  # the steps open their own engines
    apply(settings)
    return world, days, settings


def _median(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(float(value))
    return round(statistics.median(values), 2) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fresh_stream", description=__doc__.splitlines()[0])
    world_arguments(parser, "fresh_stream", "days of the world (the lake holds all but the streamed)")
    parser.add_argument("--rates", default="1000,2000", help="messages per second, open loop (comma separated)")
    parser.add_argument("--runs", type=int, default=3, help="runs (1 with --smoke)")
    parser.add_argument("--streamed-days", type=int, default=4, help="days streamed at --rate")
    args = parser.parse_args(argv)

    params = world_parameters(args.days, args.smoke)
    runs = 1 if args.smoke else args.runs
    work = Path(tempfile.mkdtemp(prefix="cardscore-bench-fresh-stream-"))
    home = work / "home"
    try:
        world, days, _settings = streamed_world(params, args.streamed_days, home, work)
        first_streamed, tx = days[0], world.transactions
        print(f"world: {len(tx)} transactions; lake before {first_streamed}; streaming {days[0]}..{days[-1]}",
              flush=True)
        rates = [float(r) for r in args.rates.split(",")]
        results: dict[float, list[dict[str, Any]]] = {rate: [] for rate in rates}
        with running_broker(args.broker, work) as bootstrap:
            producer = load_producer(bootstrap)
            for i in range(runs):  # the rates interleaved run by run
                for rate in rates:
                    result = one_run(home, bootstrap, world, days, rate, work, producer)
                    print(f"run {i + 1}/{runs} at {rate:g}/s: {result}", flush=True)
                    results[rate].append(result)
            producer.flush(10)
            del producer
        summaries = {}
        for rate, runs_at in results.items():
            summary: dict[str, Any] = {
                step: {f"p{q}_ms": _median(runs_at, step, f"p{q}_ms") for q in (50, 90, 99)}
                for step in ("card", "terminal", "baseline_delivery")
            }
            terminal_p99, baseline_p99 = summary["terminal"]["p99_ms"], summary["baseline_delivery"]["p99_ms"]
            summary["terminal_p99_over_baseline_p99"] = (
                round(terminal_p99 / baseline_p99, 2) if terminal_p99 and baseline_p99 else None)
            summary["target_met"] = bool(terminal_p99 is not None and terminal_p99 <= 1000.0)
            summaries[f"{rate:g}"] = summary
        payload = {
            "parameters": {"broker": args.broker, "rates": rates, "runs": runs, "partitions": PARTITIONS,
                           "target": "terminal (end-to-end) visibility p99 <= 1000 ms",
                           "world": {"cards": params.n_customers, "terminals": params.n_terminals, "days": params.n_days,
                                     "streamed_days": args.streamed_days, "transactions": len(tx)}},
            "summary": summaries,
            "runs": {f"{rate:g}": runs_at for rate, runs_at in results.items()},
        }
        # one file per broker: bench/results/fresh_stream.json (embedded), fresh_stream.kafka.json
        path = write_result("fresh_stream" if args.broker == "embedded" else f"fresh_stream.{args.broker}", payload,
                            smoke=args.smoke)
        print(f"wrote {path}")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
