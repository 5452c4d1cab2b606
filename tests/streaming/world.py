"""A tiny world for the stream-scorer tests: transactions of one day, a real Feast SQLite
online store holding that day's snapshot rows, and real XGBoost models registered in a real
MLflow registry (all under the test's own folder)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
import yaml
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from cardscore.core import registry
from cardscore.core.config import Settings
from cardscore.core.logs import JsonFormatter
from cardscore.features.definitions import (
    CREATED_AT,
    CUSTOMER_FEATURES,
    CUSTOMER_KEY,
    CUSTOMER_VIEW,
    EVENT_TIMESTAMP,
    MODEL_FEATURES,
    TERMINAL_FEATURES,
    TERMINAL_KEY,
    TERMINAL_VIEW,
    snapshot_time,
)
from cardscore.features.request_time import request_time_record
from cardscore.schemas.serialization import transaction_event_line

DAY = date(2018, 4, 7)  # a Saturday: the weekend flag is 1 for every event
REPO = Path(__file__).resolve().parents[2]
TEST_CONSUMER = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}


# ------------------------------------------------------------------------------ transactions


def transactions(n: int, day: date = DAY, n_customers: int = 40, n_terminals: int = 30,
                 seed: int = 0, first_id: int = 1) -> list[dict[str, Any]]:
    """`n` valid transaction records of `day` (timestamps as epoch microseconds), time-ordered.
    Customer/terminal ids run past the online store's rows so some are unknown."""
    rng = np.random.default_rng(seed)
    start = int(pd.Timestamp(snapshot_time(day)).value // 1000)
    times = np.sort(rng.integers(0, 86_400 * 1_000_000, n)) + start
    return [
        {
            "transaction_id": first_id + i,
            "event_time": int(times[i]),
            "customer_id": int(rng.integers(0, n_customers)),
            "terminal_id": int(rng.integers(0, n_terminals)),
            "amount": round(float(rng.gamma(2.0, 40.0)), 2),
        }
        for i in range(n)
    ]


def lines(records: Iterable[dict[str, Any]]) -> list[bytes]:
    return [transaction_event_line(r) for r in records]


# ------------------------------------------------------------------------------ online store


def snapshot_rows(day: date, n_customers: int, n_terminals: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    stamp = pd.Timestamp(snapshot_time(day))
    created = pd.Timestamp("2030-01-01", tz="UTC")

    def frame(key: str, n: int, names: Sequence[str]) -> pd.DataFrame:
        out = pd.DataFrame({key: np.arange(n, dtype=np.int64), EVENT_TIMESTAMP: stamp, CREATED_AT: created})
        for name in names:
            if "_nb_tx_" in name:
                out[name] = rng.integers(0, 20, n).astype(np.int64)
            elif "risk" in name:
                out[name] = rng.random(n)
            else:
                out[name] = rng.gamma(2.0, 40.0, n)
        return out

    return frame(CUSTOMER_KEY, n_customers, CUSTOMER_FEATURES), frame(TERMINAL_KEY, n_terminals, TERMINAL_FEATURES)


def fill_online_store(settings: Settings, day: date = DAY, n_customers: int = 30, n_terminals: int = 25,
                      seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the Feast repo and write day `day`'s snapshot rows of customers 0..n-1 and
    terminals 0..m-1 to the SQLite online store (what `materialize` would have written)."""
    from cardscore.features.store import apply

    store = apply(settings)
    customers, terminals = snapshot_rows(day, n_customers, n_terminals, seed)
    store.write_to_online_store(CUSTOMER_VIEW, customers)
    store.write_to_online_store(TERMINAL_VIEW, terminals)
    return customers, terminals


def expected_matrix(records: Sequence[dict[str, Any]], customers: pd.DataFrame, terminals: pd.DataFrame) -> np.ndarray:
    """The model input an independent reader of the snapshot computes (unknown entity: 0.0)."""
    c = customers.set_index(CUSTOMER_KEY)
    t = terminals.set_index(TERMINAL_KEY)
    rows = []
    for r in records:
        values = dict(request_time_record(r["amount"], r["event_time"]))
        for names, table, key in ((CUSTOMER_FEATURES, c, r["customer_id"]), (TERMINAL_FEATURES, t, r["terminal_id"])):
            for name in names:
                values[name] = float(table.at[key, name]) if key in table.index else 0.0
        rows.append([values[name] for name in MODEL_FEATURES])
    return np.asarray(rows, dtype=np.float64)


# ------------------------------------------------------------------------------ models


def booster(seed: int) -> xgb.Booster:
    """A small real model over MODEL_FEATURES; different seeds give different scores."""
    rng = np.random.default_rng(seed)
    x = rng.random((400, len(MODEL_FEATURES))) * np.array([200, 1, 1] + [20, 100] * 3 + [20, 1] * 3)
    weights = rng.normal(size=len(MODEL_FEATURES))
    y = ((x / x.max(axis=0)) @ weights + rng.normal(scale=0.3, size=400) > 0).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(MODEL_FEATURES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": seed, "nthread": 1},
                     data, num_boost_round=10)


def register(settings: Settings, model: xgb.Booster, promote: bool = True) -> str:
    """Log `model` to MLflow, register it, and (by default) make it the champion."""
    import mlflow
    import mlflow.xgboost

    client = registry.client(settings)
    experiment = client.get_experiment_by_name("stream-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        "stream-tests", artifact_location=settings.mlflow_artifact_location
    )
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.xgboost.log_model(model, name="model", model_format="json", pip_requirements=["xgboost"])
    ref = registry.register_version(
        settings, info.model_uri, run.info.run_id,
        tags={registry.TAG_FEATURE_NAMES: json.dumps(list(MODEL_FEATURES)), registry.TAG_GATE: "passed"},
    )
    if promote:
        registry.promote(settings, actor="tests", reason="stream test", version=ref.version)
    return ref.version


# ------------------------------------------------------------------------------ Kafka


def produce(settings: Settings, items: Iterable[Any], topic: str | None = None,
            headers: list[tuple[str, bytes]] | None = None) -> int:
    """Produce transaction records (dicts, keyed by customer) or (key, value) pairs of raw
    bytes (a None value is a tombstone), in order, and wait for every acknowledgement."""
    from cardscore.simulator.kafka import TRANSACTION_HEADERS

    producer = Producer({**settings.kafka_conf("producer"), "enable.idempotence": "true", "linger.ms": "5"})
    topic = topic or settings.kafka.topics.transactions
    failures: list[Any] = []
    count = 0
    for item in items:
        if isinstance(item, dict):
            key, value = str(item["customer_id"]).encode(), transaction_event_line(item)
        else:
            key, value = item
        producer.produce(topic, value=value, key=key, headers=headers if headers is not None else TRANSACTION_HEADERS,
                         on_delivery=lambda err, _m: err and failures.append(err))
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0 and not failures, failures
    return count


def read_all(settings: Settings, topic: str, partitions: int | None = None, timeout: float = 30.0) -> list[Message]:
    """Every message of `topic`, read from offset 0 until each partition reports its end.

    Call it when no producer writes to the topic any more: end-of-partition then means all."""
    n = partitions or settings.kafka.partitions
    consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": f"reader-{time.monotonic_ns()}",
                         "enable.partition.eof": "true", "enable.auto.commit": "false"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(n)])
    out: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < n:
            assert time.monotonic() < deadline, f"{topic}: only partitions {at_end} reached their end"
            for message in consumer.consume(500, 0.2):
                if message.error() is None:
                    out.append(message)
                    at_end.discard(message.partition())
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
    finally:
        consumer.close()
    return out


def read_until(settings: Settings, topic: str, done: Callable[[list[Message]], bool], timeout: float = 60.0,
               partitions: int | None = None) -> list[Message]:
    """Read `topic` from the start until `done(messages)` holds (AssertionError on timeout)."""
    n = partitions or settings.kafka.partitions
    consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": f"reader-{time.monotonic_ns()}",
                         "enable.auto.commit": "false"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(n)])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(out):
            assert time.monotonic() < deadline, f"{topic}: condition not met with {len(out)} messages"
            out.extend(m for m in consumer.consume(500, 0.2) if m.error() is None)
    finally:
        consumer.close()
    return out


def scores_by_id(messages: Iterable[Message]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for m in messages:
        body = json.loads(m.value())
        assert m.key() == str(body["transaction_id"]).encode()
        out.setdefault(body["transaction_id"], []).append(body)
    return out


def committed(settings: Settings, group: str, partitions: int | None = None) -> dict[int, int]:
    consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": group})
    try:
        n = partitions or settings.kafka.partitions
        found = consumer.committed([TopicPartition(settings.kafka.topics.transactions, p) for p in range(n)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


# ------------------------------------------------------------------------------ processes


class JsonLogLines(logging.Handler):
    """The log lines of this process's loggers it is added to, as the JSON formatter writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [event for event in map(json.loads, self.lines) if event["event"] == name]


@dataclass
class ScorerProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e.get("event") == name]

    def wait_for(self, condition: Callable[[ScorerProcess], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            assert self.proc.poll() is None or condition(self), f"scorer exited ({self.proc.returncode}) before {what}:\n{self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.05)  # polling a log file for a condition, not synchronising on time

    def scored(self) -> int:
        """Scores so far: the latest cumulative total in the log (stream.progress, stream.stopped)."""
        return max((e.get("scored", 0) for e in self.events("stream.progress") + self.events("stream.stopped")),
                   default=0)


def write_config(settings: Settings, path: Path, streaming: dict[str, Any] | None = None) -> Path:
    """The test's settings as a YAML file a scorer subprocess loads with --config."""
    data = {
        "home": str(settings.home_path),
        "kafka": {
            "mode": "external",
            "client": dict(settings.kafka.client),
            "consumer": {**TEST_CONSUMER, **settings.kafka.consumer},
            "partitions": settings.kafka.partitions,
            "topics": settings.kafka.topics.model_dump(),
        },
        "streaming": {**settings.streaming.model_dump(), **(streaming or {})},
        "mlflow": {"model_name": settings.mlflow.model_name},
        "feast": settings.feast.model_dump(),
        "logging": {"format": "json", "level": "INFO"},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def start_scorer(config: Path, log: Path, *args: str) -> ScorerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE")}
    env["PYTHONPATH"] = str(REPO)
    handle = open(log, "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "cardscore.streaming", "--config", str(config), *args],
        stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=env,
    )
    handle.close()
    return ScorerProcess(proc, log)


# ------------------------------------------------------------------------------ in-process


class InProcessScorer:
    """A StreamScorer running in a thread of the test process (stop() drains it)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        import threading

        from cardscore.streaming.scorer import StreamScorer

        self.scorer = StreamScorer(settings, **kwargs)
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scorer", daemon=True)

    def _run(self) -> None:
        try:
            self.exit_code = self.scorer.run()
        except BaseException as exc:  # surfaced by wait_for / stop
            self.error = exc

    def __enter__(self) -> InProcessScorer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> int | None:
        self.scorer.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the scorer did not stop"
        if self.error is not None:
            raise self.error
        return self.exit_code

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.error is not None:
                raise self.error
            assert self._thread.is_alive() or condition(), f"the scorer stopped before {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {dict(self.scorer.totals)}"
            time.sleep(0.02)  # polling interval of a condition

    @property
    def totals(self) -> dict[str, int]:
        return dict(self.scorer.totals)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.scorer.metrics.value(name, labels)
