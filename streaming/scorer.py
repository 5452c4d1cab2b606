"""The stream scorer: a consumer-group member that scores micro-batches of transactions.

One loop iteration is one micro-batch:

1. between batches: look the model alias up (at most every `model_poll_seconds`) and swap
   the booster if it moved, so a batch is scored by exactly one version;
2. `consume(batch_max_messages, batch_max_wait_ms)`;
3. validate every message with the shared validator; invalid ones become DLQ records;
4. one Feast online lookup for the batch's valid transactions, one `inplace_predict`;
5. produce scores and DLQ records, wait for the broker's acknowledgements, then commit the
   offsets of exactly the processed messages (`streaming.delivery`).

A failed lookup or delivery rewinds the consumer to the batch's first offsets and retries
with backoff: no message is skipped, and nothing is committed that was not acknowledged.

Rebalances (cooperative-sticky): librdkafka runs the callbacks inside `consume()`, which the
loop calls only after the previous batch was acknowledged and committed, so partitions are
never given up with work in flight. Messages of a partition revoked during that very
`consume()` call are dropped unprocessed (and uncommitted): the partition's next owner reads
them. SIGTERM/SIGINT finish the batch in hand, commit, leave the group, and exit 0.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cardscore.core.logs import get_logger
from cardscore.core.registry import CHAMPION
from cardscore.streaming.delivery import (
    AtLeastOnce,
    DeliveryFailed,
    ExactlyOnce,
    OutRecord,
    default_instance_id,
)
from cardscore.streaming.dlq import dlq_record
from cardscore.streaming.features import BatchFeatures, FeastLookup, Lookup
from cardscore.streaming.messages import first_offsets, next_offsets, split_messages
from cardscore.streaming.metrics import StreamMetrics
from cardscore.streaming.model import ModelUnavailable, ModelWatcher
from cardscore.streaming.output import SCORE_HEADERS, ScoreColumns, score_keys, score_values
from cardscore.streaming.release import ReleaseWatcher, release_columns, score_batch

if TYPE_CHECKING:
    from cardscore.core.config import Settings

log = get_logger("streaming.scorer")

# Options the scorer's correctness depends on, whatever the configuration says.
_CONSUMER_REQUIRED = {
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    "partition.assignment.strategy": "cooperative-sticky",
}
_CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": "10",  # low latency; a batch still fills up under load
    "isolation.level": "read_committed",
    # Partitions added to the transactions topic are assigned at the next metadata refresh:
    # within 10 s instead of librdkafka's default 5 minutes (a metadata request per 10 s is
    # nothing for a broker).
    "topic.metadata.refresh.interval.ms": "10000",
}


def consumer_conf(settings: Settings, group_id: str, instance_id: str) -> dict[str, str]:
    conf = {**_CONSUMER_DEFAULTS, **settings.kafka_conf("consumer")}
    conf.setdefault("client.id", f"cardscore-stream-{instance_id}")
    conf["group.id"] = group_id
    conf.update(_CONSUMER_REQUIRED)
    return conf


@dataclass
class Backoff:
    initial: float
    maximum: float
    current: float = 0.0

    def next(self) -> float:
        self.current = self.initial if self.current == 0 else min(self.current * 2, self.maximum)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


@dataclass
class BatchReport:
    """What one micro-batch did (also what the benchmark and tests count)."""

    messages: int = 0
    scored: int = 0
    dlq: dict[str, int] = field(default_factory=dict)
    model_version: str | None = None
    retried: str | None = None  # the stage that failed; the batch was rewound


class StreamScorer:
    """One scorer process's consumer-group member. `run()` returns the exit code."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str | None = None,
        instance_id: str | None = None,
        lookup: Lookup | None = None,
        watcher: ModelWatcher | ReleaseWatcher | None = None,
        metrics: StreamMetrics | None = None,
        idle_exit_seconds: float | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        cfg = settings.streaming
        self.settings = settings
        self.cfg = cfg
        self.group_id = group_id or cfg.group_id
        self.instance_id = instance_id or default_instance_id()
        self.scorer_name = f"{self.group_id}/{self.instance_id}"
        self.topics = settings.kafka.topics
        self.max_bytes = settings.ingest.max_line_bytes
        self.metrics = metrics or StreamMetrics()
        self.idle_exit_seconds = idle_exit_seconds
        self.on_batch = on_batch
        self._lookup = lookup
        # The champion alias serves the release (canary, shadow, kill switch); another alias
        # (a side scorer) serves that alias's version alone.
        self.watcher = watcher or (
            ReleaseWatcher(settings, cfg.model_poll_seconds, threads=cfg.model_threads, metrics=self.metrics)
            if cfg.model_alias == CHAMPION
            else ModelWatcher(settings, cfg.model_alias, cfg.model_poll_seconds, threads=cfg.model_threads)
        )
        self.backoff = Backoff(cfg.retry_initial_seconds, cfg.retry_max_seconds)
        self._stop = threading.Event()
        self._assigned: set[tuple[str, int]] = set()
        self._revoked_in_call: set[tuple[str, int]] = set()
        self._fatal: KafkaError | None = None
        self._lag_due = 0.0
        self._idle_since = time.monotonic()
        self._lag_labels: set[tuple[str, int]] = set()
        self.consumer: Consumer | None = None
        self.delivery: AtLeastOnce | ExactlyOnce | None = None
        self.totals: Counter[str] = Counter()

    # ------------------------------------------------------------------ lifecycle

    def stop(self, *_args: Any) -> None:
        """Ask the loop to finish the batch in hand, commit and leave (signal-safe)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> int:
        log.info("stream.starting", group=self.group_id, instance=self.instance_id,
                 topic=self.topics.transactions, delivery=self.cfg.delivery,
                 batch_max_messages=self.cfg.batch_max_messages)
        if not self._wait_for_model():
            return 0  # stopped before any model existed: nothing was consumed
        self.consumer = Consumer(
            {**consumer_conf(self.settings, self.group_id, self.instance_id), "error_cb": self._consumer_error}
        )
        # Join the group now: librdkafka joins in the background while the feature store opens
        # (seconds of imports); the assignment waits in the queue for the first consume().
        self.consumer.subscribe(
            [self.topics.transactions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._idle_since = time.monotonic()
        try:
            if not self._open_lookup():
                return 0
            self.delivery = self._make_delivery()
            while not self._stop.is_set():
                self._refresh_model()
                self._refresh_lag()
                if self.delivery.pending:
                    self.delivery.commit_pending()
                report = self.process(self._consume())
                if report.messages or not self._assigned:
                    self._idle_since = time.monotonic()  # idle means: partitions, but no messages
                elif (self.idle_exit_seconds is not None
                      and time.monotonic() - self._idle_since >= self.idle_exit_seconds):
                    log.info("stream.idle_exit", idle_seconds=self.idle_exit_seconds)
                    break
        finally:
            self._shutdown()
        return 0

    def _consume(self) -> list[Message]:
        assert self.consumer is not None
        self._revoked_in_call.clear()
        try:
            messages = self.consumer.consume(self.cfg.batch_max_messages, self.cfg.batch_max_wait_ms / 1000)
        except KafkaException as exc:
            self.metrics.errors.labels("consume").inc()
            log.warning("stream.consume_failed", error=str(exc))
            return []
        if messages:
            self.metrics.dependency_up.labels("broker").set(1)
        good: list[Message] = []
        for message in messages:
            err = message.error()
            if err is None:
                good.append(message)
            elif err.code() != KafkaError._PARTITION_EOF:
                self._consumer_error(err)
        if self._fatal is not None:
            raise KafkaException(self._fatal)  # the consumer cannot continue: exit 1
        return self._drop_revoked(good)

    def _consumer_error(self, err: KafkaError) -> None:
        """Client-level errors (error_cb and error events): librdkafka reconnects by itself;
        only a fatal error stops the scorer."""
        self.metrics.errors.labels("consume").inc()
        if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT):
            self.metrics.dependency_up.labels("broker").set(0)
        log.warning("stream.consumer_error", code=err.name(), fatal=err.fatal(), detail=err.str())
        if err.fatal():
            # Raised by the loop after consume() returns: an exception inside a librdkafka
            # callback would surface as a consume() failure, which is retried.
            self._fatal = err

    def _drop_revoked(self, messages: list[Message]) -> list[Message]:
        """Drop messages of partitions revoked during the consume() call that returned them."""
        if not self._revoked_in_call:
            return messages
        dropped = [m for m in messages if (m.topic(), m.partition()) in self._revoked_in_call]
        if not dropped:
            return messages
        log.info("stream.dropped_revoked", messages=len(dropped))
        # A partition revoked and assigned again within the call must re-read them.
        self._rewind(dropped, only_assigned=True)
        return [m for m in messages if (m.topic(), m.partition()) not in self._revoked_in_call]

    def _shutdown(self) -> None:
        log.info("stream.stopping", **self.totals)
        try:
            if self.delivery is not None:
                self.delivery.commit_pending(force=True)
            if self.consumer is not None:
                self.consumer.close()  # revokes (committing what is pending) and leaves the group
        except KafkaException as exc:
            log.warning("stream.close_failed", error=str(exc))
        finally:
            if self.delivery is not None:
                self.delivery.close()
        log.info("stream.stopped", **self.totals)

    def _make_delivery(self) -> AtLeastOnce | ExactlyOnce:
        assert self.consumer is not None
        base = self.settings.kafka_conf("producer")
        timeout = self.cfg.delivery_timeout_seconds
        if self.cfg.delivery == "exactly_once":
            txn_id = f"{self.cfg.transactional_id_prefix}-{self.instance_id}"
            return ExactlyOnce(base, self.consumer, self.metrics, timeout, txn_id)
        return AtLeastOnce(base, self.consumer, self.metrics, timeout)

    # ------------------------------------------------------------------ dependencies

    def _wait(self, seconds: float) -> bool:
        """Back off for `seconds`; False if a stop was requested meanwhile."""
        return not self._stop.wait(seconds)

    def _wait_for_model(self) -> bool:
        while not self._stop.is_set():
            try:
                self.watcher.refresh(force=True)
                self._publish_model()
                self.backoff.reset()
                return True
            except ModelUnavailable as exc:
                delay = self.backoff.next()
                self.metrics.dependency_up.labels("registry").set(0)
                log.warning("stream.model_unavailable", error=str(exc), retry_in=delay)
                self._wait(delay)
        return False

    def _open_lookup(self) -> bool:
        while self._lookup is None and not self._stop.is_set():
            try:
                self._lookup = FeastLookup(self.settings)
                self.backoff.reset()
            except Exception as exc:
                delay = self.backoff.next()
                self.metrics.errors.labels("lookup").inc()
                self.metrics.dependency_up.labels("online_store").set(0)
                log.warning("stream.feature_store_unavailable", error=str(exc), retry_in=delay)
                self._wait(delay)
        return self._lookup is not None

    def _refresh_model(self) -> None:
        if not self.watcher.due():
            return
        try:
            swapped = self.watcher.refresh()
            self.metrics.dependency_up.labels("registry").set(1)
        except Exception as exc:  # keep scoring with the current version
            self.metrics.errors.labels("registry").inc()
            self.metrics.dependency_up.labels("registry").set(0)
            log.warning("stream.registry_poll_failed", error=str(exc),
                        keeping=self.watcher.current.version if self.watcher.current else None)
            return
        if swapped:
            self.metrics.model_swaps.inc()
            self._publish_model()

    def _publish_model(self) -> None:
        model = self.watcher.current
        assert model is not None
        self.metrics.model.info({"name": model.name, "version": model.version})
        with contextlib.suppress(ValueError):  # versions are numbers in MLflow; be lenient
            self.metrics.model_version.set(float(model.version))
        self.metrics.dependency_up.labels("registry").set(1)

    def _refresh_lag(self) -> None:
        """consumer_lag per assigned partition, as Kafka defines it: the partition's high
        watermark (from the latest fetch response, no extra request) minus the group's
        committed offset (one OffsetFetch for all partitions, every lag_interval_seconds)."""
        now = time.monotonic()
        if now < self._lag_due or self.consumer is None:
            return
        self._lag_due = now + self.cfg.lag_interval_seconds
        for topic, partition in self._lag_labels - self._assigned:
            with warnings.catch_warnings():
                # prometheus_client warns when Feast's import set PROMETHEUS_MULTIPROC_DIR; these
                # metrics hold in-process values (StreamMetrics), so the removal does happen.
                warnings.filterwarnings("ignore", "Removal of labels", UserWarning)
                self.metrics.consumer_lag.remove(topic, str(partition))
        self._lag_labels &= self._assigned
        if not self._assigned:
            return
        try:
            committed = self.consumer.committed(
                [TopicPartition(t, p) for t, p in sorted(self._assigned)], timeout=2.0
            )
        except KafkaException as exc:  # the broker is away: keep the last values
            log.warning("stream.lag_unavailable", error=str(exc))
            return
        for tp in committed:
            if tp.error is not None:
                continue
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                continue  # no fetch response for it yet
            start = tp.offset if tp.offset >= 0 else max(low, 0)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(high - start, 0))
            self._lag_labels.add((tp.topic, tp.partition))

    # ------------------------------------------------------------------ one batch

    def process(self, messages: Sequence[Message]) -> BatchReport:
        """Score one micro-batch end to end (validate, look up, predict, deliver, commit)."""
        report = BatchReport(messages=len(messages))
        if not messages:
            return report
        started = time.perf_counter()
        split = split_messages(messages, self.max_bytes)
        valid = split.valid
        model = self.watcher.current
        assert model is not None and self.delivery is not None
        report.model_version = model.version
        out: list[OutRecord] = []
        if len(valid):
            try:
                t0 = time.perf_counter()
                found = self._call_lookup(valid.records)
                self.metrics.lookup_latency.observe(time.perf_counter() - t0)
                self.metrics.dependency_up.labels("online_store").set(1)
            except Exception as exc:
                return self._retry(messages, report, "lookup", exc)
            t0 = time.perf_counter()
            scored = score_batch(model, found.matrix, valid.customer_id)  # the release's arms
            self.metrics.scoring_latency.observe(time.perf_counter() - t0)
            values = score_values(
                ScoreColumns(
                    transaction_id=valid.transaction_id,
                    customer_id=valid.customer_id,
                    terminal_id=valid.terminal_id,
                    event_time_us=valid.event_time_us,
                    **release_columns(scored),  # score, model, arm, fallback, shadow
                    feature_snapshot_date=found.snapshot_date,
                    unknown_customer=~found.customer_known,
                    unknown_terminal=~found.terminal_known,
                    scored_at_us=time.time_ns() // 1000,
                )
            )
            scores_topic = self.topics.scores
            out = [
                OutRecord(scores_topic, key, value, SCORE_HEADERS)
                for key, value in zip(score_keys(valid.transaction_id), values, strict=True)
            ]
        if split.rejected:
            now_us = time.time_ns() // 1000
            for rejected in split.rejected:
                record = dlq_record(rejected, self.scorer_name, now_us, self.cfg.dlq_detail_max_chars)
                out.append(OutRecord(self.topics.dlq, record.key, record.value, record.headers))
        try:
            self.delivery.deliver(out, next_offsets(messages))
        except DeliveryFailed as exc:
            return self._retry(messages, report, "delivery", exc)
        self._account(report, split.reason_counts(), valid, found if len(valid) else None, started)
        return report

    def _call_lookup(self, records: list[dict[str, Any]]) -> BatchFeatures:
        assert self._lookup is not None
        return self._lookup(records)

    def _account(self, report: BatchReport, reasons: dict[str, int], valid: Any,
                 found: BatchFeatures | None, started: float) -> None:
        m = self.metrics
        now = time.time()
        report.scored = len(valid)
        report.dlq = reasons
        m.messages_in.inc(report.messages)
        m.scores_out.inc(report.scored)
        m.batch_size.observe(report.messages)
        for reason, count in reasons.items():
            m.dlq.labels(reason).inc(count)
        if valid.key_mismatches:
            m.key_mismatches.inc(valid.key_mismatches)
        if found is not None:
            m.unknown_entities.labels("customer").inc(int((~found.customer_known).sum()))
            m.unknown_entities.labels("terminal").inc(int((~found.terminal_known).sum()))
            m.e2e_latency.observe_many(now - valid.event_time_us / 1e6, "event_time")
            stamped = valid.kafka_timestamp_ms[valid.kafka_timestamp_ms >= 0]
            m.e2e_latency.observe_many(now - stamped / 1e3, "kafka_timestamp")
        m.batch_latency.observe(time.perf_counter() - started)
        self.backoff.reset()
        self.totals.update(messages=report.messages, scored=report.scored, dlq=sum(reasons.values()))
        log.info("stream.batch", messages=report.messages, scored=report.scored, dlq=reasons,
                 model_version=report.model_version,
                 seconds=round(time.perf_counter() - started, 4))
        if self.on_batch is not None:
            self.on_batch(report)

    def _retry(self, messages: Sequence[Message], report: BatchReport, stage: str, exc: Exception) -> BatchReport:
        """Rewind to the batch's first offsets and back off; the next consume re-reads it."""
        delay = self.backoff.next()
        self.metrics.errors.labels(stage).inc()
        self.metrics.retries.labels(stage).inc()
        if stage == "lookup":
            self.metrics.dependency_up.labels("online_store").set(0)
        log.warning("stream.batch_retry", stage=stage, error=str(exc)[:500], messages=len(messages),
                    retry_in=delay)
        self._rewind(messages)
        report.retried = stage
        self.totals.update(retries=1)
        if self.on_batch is not None:
            self.on_batch(report)
        self._wait(delay)
        return report

    def _rewind(self, messages: Sequence[Message], only_assigned: bool = False) -> None:
        assert self.consumer is not None
        for (topic, partition), offset in first_offsets(messages).items():
            if only_assigned and (topic, partition) not in self._assigned:
                continue
            tp = TopicPartition(topic, partition, offset)
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                # Not fetching yet (or any seek refusal): re-assign at the offset instead.
                log.warning("stream.seek_failed", topic=topic, partition=partition, error=str(exc))
                self.consumer.incremental_unassign([TopicPartition(topic, partition)])
                self.consumer.incremental_assign([tp])

    # ------------------------------------------------------------------ rebalance callbacks

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(p.topic, p.partition) for p in partitions}
        consumer.incremental_assign(partitions)  # cooperative-sticky is enforced
        if not keys:
            return  # a rebalance that moved nothing to this member
        self._assigned |= keys
        # Idle time counts from the assignment: the first consume() that assigns returns no
        # messages yet (a real Kafka's first fetch takes a round trip or two).
        self._idle_since = time.monotonic()
        self.metrics.assigned_partitions.set(len(self._assigned))
        self.metrics.rebalances.labels("assigned").inc(len(keys))
        log.info("stream.assigned", partitions=sorted(f"{t}[{p}]" for t, p in keys),
                 total=len(self._assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(p.topic, p.partition) for p in partitions}
        # Nothing is in flight here (see the module docstring); offsets whose commit failed
        # earlier are committed now, before the partitions go.
        if self.delivery is not None:
            self.delivery.commit_pending(only=keys, force=True)
            self.delivery.forget(keys)
        self._give_up(consumer, partitions, keys, "revoked")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(p.topic, p.partition) for p in partitions}
        # The group coordinator was unreachable for a session timeout: the broker is away.
        self.metrics.dependency_up.labels("broker").set(0)
        self.metrics.errors.labels("consume").inc()
        if self.delivery is not None:
            self.delivery.forget(keys)  # another member owns them: committing would be wrong
        self._give_up(consumer, partitions, keys, "lost")

    def _give_up(self, consumer: Consumer, partitions: list[TopicPartition], keys: set[tuple[str, int]], kind: str) -> None:
        consumer.incremental_unassign(partitions)
        self._assigned -= keys
        self._revoked_in_call |= keys
        self.metrics.assigned_partitions.set(len(self._assigned))
        self.metrics.rebalances.labels(kind).inc(len(keys))
        log.info(f"stream.{kind}", partitions=sorted(f"{t}[{p}]" for t, p in keys),
                 total=len(self._assigned))

