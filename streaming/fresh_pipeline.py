"""The streaming fresh-feature pipeline on Kafka: `cardscore fresh-stream card|terminal`.

Two consumer groups (features/README.md, "The streaming pipeline"):

* **card**: the transactions and labels topics (both keyed by card, same partition count; the
  range assignor co-assigns a card's partitions of both), `fresh_steps.CardStep`; forwards to
  the repartition topic `kafka.topics.fresh_forwards`, keyed by terminal;
* **terminal**: the repartition topic, `fresh_steps.TerminalStep`.

Each writes the events of the entities a micro-batch changed to the Feast online store
(`features.fresh_store`), then commits. At least once, and exact on a restart:

1. a batch's forwards are acknowledged by the broker and its entity events written to the
   store **before** its offsets are committed; a crash re-delivers at most the uncommitted
   batches, and re-processing them changes nothing (duplicates dropped by transaction id,
   verdicts a set);
2. the state lives in memory and is **rebuilt** on start and on every assignment: the
   entities of the assigned partitions are loaded from the lake (silver transactions and
   label reports of the last 30 days plus the lateness, `fresh_stream.bootstrap_from_lake`),
   then each assigned partition is read **from its beginning**; messages below the group's
   committed offset are replayed into the state only (their forwards and writes were done
   before the commit), the rest processed normally. So the state after a SIGKILL is the one
   before it. (The topics' retention must cover what the lake does not hold yet.)

Invalid messages are counted by reason and skipped (the stream scorer dead-letters the same
transactions with the same validator; the pipeline writes no second DLQ record).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from cardscore.core.logs import get_logger
from cardscore.features.fresh import ahead_of_clock
from cardscore.features.fresh_history import HistoryEvent
from cardscore.schemas.contracts import LABEL_EVENT, TRANSACTION_EVENT
from cardscore.schemas.reasons import RejectReason
from cardscore.schemas.validation import Rejection, validate_bytes
from cardscore.streaming.fresh_metrics import FreshMetrics
from cardscore.streaming.fresh_steps import FORWARD_SCHEMA, CardStep, Forward, TerminalStep
from cardscore.streaming.polling import CONSUMER_DEFAULTS, take_batch

if TYPE_CHECKING:
    from cardscore.core.config import Settings
    from cardscore.features.fresh_store import FreshEventsStore

log = get_logger("streaming.fresh_pipeline")

StepKind = Literal["card", "terminal"]
# given which entity keys are wanted, the lake's history events (features.fresh_history)
HistoryLoader = Callable[[Callable[[int], bool]], Iterable[HistoryEvent]]


def partition_of(key: int, partitions: int) -> int:
    """The partition librdkafka's default partitioner (`consistent_random`: CRC32 of the key)
    gives a decimal key, as the replay and the forward producer key messages; so the
    bootstrap loads exactly the entities of the assigned partitions."""
    return zlib.crc32(str(key).encode()) % partitions


@dataclass
class StepReport:
    messages: int = 0
    replayed: int = 0  # re-read below the committed offset after an assignment: state only
    transactions: int = 0
    labels: int = 0
    forwards: int = 0
    rows_written: int = 0
    bootstrapped: int = 0  # history events loaded from the lake
    rejected: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "rejected"}
        out["rejected"] = dict(self.rejected)
        return out


class FreshStepRunner:
    """One process of a step's consumer group."""

    def __init__(self, settings: Settings, kind: StepKind, store: FreshEventsStore,
                 history: HistoryLoader | None = None, instance_id: str | None = None,
                 metrics: FreshMetrics | None = None) -> None:
        self.settings = settings
        self.kind = kind
        self.store = store
        self.history = history
        self.cfg = settings.fresh_stream
        topics = settings.kafka.topics
        self.topics = [topics.transactions, topics.labels] if kind == "card" else [topics.fresh_forwards]
        self.group_id = self.cfg.card_group_id if kind == "card" else self.cfg.terminal_group_id
        self.instance_id = instance_id
        self.step: CardStep | TerminalStep = CardStep() if kind == "card" else TerminalStep()
        self.report = StepReport()
        self.metrics = metrics or FreshMetrics(kind)
        self.max_bytes = settings.ingest.max_line_bytes
        self._stop = threading.Event()
        self._resume: dict[tuple[str, int], int] = {}  # (topic, partition) -> committed offset
        self._to_bootstrap: list[tuple[str, int]] = []
        self.consumer: Any = None
        self.producer: Any = None

    def stop(self, *_args: Any) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ loop

    def run(self, idle_exit_seconds: float | None = None, on_batch: Callable[[StepReport], None] | None = None) -> StepReport:
        from confluent_kafka import Consumer, Producer

        conf = {**CONSUMER_DEFAULTS, **self.settings.kafka_conf("consumer"), "group.id": self.group_id,
                "enable.auto.commit": "false",
                # co-assignment of a card's transactions and labels partitions (eager protocol)
                "partition.assignment.strategy": "range"}
        if self.instance_id:
            conf["client.id"] = self.instance_id
        self.consumer = Consumer(conf)
        if self.kind == "card":
            self.producer = Producer({**self.settings.kafka_conf("producer"), "enable.idempotence": "true",
                                      "acks": "all", "linger.ms": "1", "partitioner": "consistent_random"})
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("fresh_stream.starting", step=self.kind, group=self.group_id, topics=self.topics)
        idle_since = time.monotonic()
        wait = self.cfg.batch_max_wait_ms / 1000.0
        try:
            while not self._stop.is_set():
                messages = take_batch(self.consumer, self.cfg.batch_max_messages, wait)
                if self._to_bootstrap:
                    self._bootstrap()
                if messages:
                    self._process(messages)
                    idle_since = time.monotonic()
                    if on_batch is not None:
                        on_batch(self.report)
                elif idle_exit_seconds is not None and time.monotonic() - idle_since >= idle_exit_seconds:
                    log.info("fresh_stream.idle_exit", step=self.kind, idle_seconds=idle_exit_seconds)
                    break
        finally:
            self.consumer.close()
            if self.producer is not None:
                self.producer.flush(10)
                self.producer = None  # librdkafka's handle goes with the last reference
            log.info("fresh_stream.stopped", step=self.kind, **self.report.to_dict())
        return self.report

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        committed = consumer.committed(partitions, timeout=10)
        for tp in committed:
            self._resume[(tp.topic, tp.partition)] = max(tp.offset, 0)
            self._to_bootstrap.append((tp.topic, tp.partition))
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING  # rebuild: replay from the start (state only below the committed offset)
        consumer.assign(partitions)
        log.info("fresh_stream.assigned", step=self.kind,
                 partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._resume.pop((tp.topic, tp.partition), None)

    # ------------------------------------------------------------------ bootstrap

    def _bootstrap(self) -> None:
        """Load the newly assigned partitions' entities from the lake, write them to the store."""
        wanted, self._to_bootstrap = self._to_bootstrap, []
        if self.history is None or not self.cfg.bootstrap_from_lake:
            return
        metadata = self.consumer.list_topics(self.topics[0], timeout=10)
        count = len(metadata.topics[self.topics[0]].partitions)
        mine = {p for t, p in wanted if t == self.topics[0]}
        started = time.perf_counter()
        loaded = 0
        for kind, record in self.history(lambda key: partition_of(key, count) in mine):
            self.step.load(kind, record)
            loaded += 1
        written = self.store.write(self.step.exports())
        self.report.bootstrapped += loaded
        self.report.rows_written += written
        log.info("fresh_stream.bootstrapped", step=self.kind, partitions=sorted(mine), events=loaded,
                 rows=written, seconds=round(time.perf_counter() - started, 3))

    # ------------------------------------------------------------------ one batch

    def _process(self, messages: list[Any]) -> None:
        started = time.perf_counter()
        forwards: list[Forward] = []
        offsets: dict[tuple[str, int], int] = {}
        sent: list[int] = []  # source message timestamps (ms) of what this batch makes visible
        for message in messages:
            if message.error() is not None:
                log.warning("fresh_stream.consume_error", step=self.kind, error=str(message.error()))
                continue
            tp = (message.topic(), message.partition())
            offsets[tp] = message.offset() + 1
            self.report.messages += 1
            self.metrics.messages.inc()
            replay = message.offset() < self._resume.get(tp, 0)
            self.report.replayed += replay
            kind, stamp = message.timestamp()
            out, source_ms = self._handle(message, stamp if kind else None)
            if not replay:
                forwards += out if source_ms is None else [replace(f, sent_ms=source_ms) for f in out]
                if source_ms is not None:
                    sent.append(source_ms)
        processed = time.perf_counter()
        if forwards:
            self._produce(forwards)
        acknowledged = time.perf_counter()
        written = self.store.write(self.step.exports())
        stored = time.perf_counter()
        self.report.rows_written += written
        self.metrics.rows.inc(written)
        now_ms = time.time() * 1000.0
        for source_ms in sent:
            self.metrics.visible.observe(max(now_ms - source_ms, 0.0) / 1000.0)
        if self.step.clock_us is not None:
            self.metrics.as_of.set(self.step.clock_us / 1e6)
        self._commit(offsets)
        done = time.perf_counter()
        self.metrics.batch.observe(done - started)
        log.info("fresh_stream.batch", step=self.kind, messages=len(messages), forwards=len(forwards),
                 rows_written=written, total_messages=self.report.messages,
                 ms={"process": round((processed - started) * 1e3, 1), "forward": round((acknowledged - processed) * 1e3, 1),
                     "store": round((stored - acknowledged) * 1e3, 1), "commit": round((done - stored) * 1e3, 1)})

    def _handle(self, message: Any, stamp_ms: int | None) -> tuple[list[Forward], int | None]:
        """Process one message: (its forwards, the source timestamp its freshness counts from:
        its own, or for a forward the original message's); a rejected message gives neither."""
        raw = message.value() or b""
        if self.kind == "terminal":
            try:
                forward = Forward.from_json(raw)
            except (ValueError, KeyError, TypeError):
                self._reject("malformed_forward", message)
                return [], None
            assert isinstance(self.step, TerminalStep)
            if self._from_the_future(max(forward.us, forward.reported_us or 0), message):
                return [], None
            self.step.forwards([forward])
            return [], forward.sent_ms if forward.sent_ms is not None else stamp_ms
        assert isinstance(self.step, CardStep)
        is_label = message.topic() == self.topics[1]
        record = validate_bytes(raw, LABEL_EVENT if is_label else TRANSACTION_EVENT, self.max_bytes)
        if isinstance(record, Rejection):
            self._reject(record.reason.value, message)
            return [], None
        if self._from_the_future(record["reported_time"] if is_label else record["event_time"], message):
            return [], None
        if is_label:
            self.report.labels += 1
            return self.step.label(record), stamp_ms
        self.report.transactions += 1
        return self.step.transaction(record), stamp_ms

    def _from_the_future(self, us: int, message: Any) -> bool:
        """Reject (`outside_window`) an event too far ahead of the wall clock: valid by its
        contract, it would move the state's event-time clock ahead and evict real history."""
        if ahead_of_clock(us, time.time_ns() // 1000):
            self._reject(RejectReason.OUTSIDE_WINDOW.value, message)
            return True
        return False

    def _reject(self, reason: str, message: Any) -> None:
        self.report.rejected[reason] += 1
        self.metrics.rejected.labels(self.kind, reason).inc()
        log.warning("fresh_stream.rejected", step=self.kind, reason=reason,
                    topic=message.topic(), partition=message.partition(), offset=message.offset())

    def _produce(self, forwards: list[Forward]) -> None:
        """Produce the batch's forwards and wait for every acknowledgement (before the commit)."""
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        topic = self.settings.kafka.topics.fresh_forwards
        headers = [("schema", FORWARD_SCHEMA.encode()), ("content-type", b"application/json")]
        for f in forwards:
            while True:
                try:
                    self.producer.produce(topic, f.to_json(), f.key(), headers=headers, on_delivery=delivered)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        remaining = self.producer.flush(60)
        if remaining or failures:
            raise RuntimeError(f"fresh_stream: {remaining} forwards unacknowledged, failures {failures[:3]}")
        self.report.forwards += len(forwards)

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import TopicPartition

        if offsets:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                 asynchronous=False)



def run_fresh_step(settings: Settings, kind: StepKind, instance_id: str | None = None,
                   idle_exit_seconds: float | None = None, metrics_port: int | None = None) -> StepReport:
    """One process of a step, composed from settings: the Feast store (the repo applied if its
    registry lacks the fresh views), the lake's history through the engine when
    `fresh_stream.bootstrap_from_lake`, SIGTERM/SIGINT finishing the batch in hand."""
    import signal

    from cardscore.features.fresh import Entity
    from cardscore.features.fresh_store import FreshEventsStore
    from cardscore.features.store import ensure_applied, feature_store

    store = FreshEventsStore(ensure_applied(settings, feature_store(settings)))
    history = None
    if settings.fresh_stream.bootstrap_from_lake:
        from cardscore.core.engine import get_spark
        from cardscore.core.lake import Lake
        from cardscore.features.fresh_history import lake_history

        history = lake_history(Lake(get_spark(settings), settings), Entity.CARD if kind == "card" else Entity.TERMINAL)
    metrics = FreshMetrics(kind)
    port = settings.fresh_stream.metrics_port if metrics_port is None else metrics_port
    if port:
        log.info("fresh_stream.metrics", step=kind, port=metrics.serve(port, settings.streaming.metrics_host))
    runner = FreshStepRunner(settings, kind, store, history=history, instance_id=instance_id, metrics=metrics)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    return runner.run(idle_exit_seconds=idle_exit_seconds)
