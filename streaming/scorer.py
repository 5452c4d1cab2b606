"""The stream scorer: a consumer-group member that scores micro-batches of transactions.

One loop iteration is one micro-batch:

1. between batches: look the model alias up (at most every `model_poll_seconds`) and swap
   the booster if it moved, so a batch is scored by exactly one version;
2. take what is queued, up to `batch_max_messages` (`streaming.polling.take_batch`: no waiting
   for a batch to fill; at most `batch_max_wait_ms` for the first message of an idle topic);
3. validate every message with the shared validator; invalid ones become DLQ records;
4. one read of the online features (`features.online_reader`: by default the store's rows in
   memory) for the batch's valid transactions, one `inplace_predict`;
5. produce scores and DLQ records and go on with the next batch; once the broker acknowledged
   a batch and every batch before it, commit their offsets asynchronously (`streaming.pipelined`;
   with `exactly_once`, one transaction per batch, `streaming.delivery`). An offset counts as
   committed when the consumer's `on_commit` callback, served by the next consume(), confirms
   it (`streaming.commits`); a failed commit stays pending and is sent again, a newer one of
   the same partition supersedes it. The loop never waits for a commit: while commits fail or
   go unconfirmed (the group coordinator is away) the broker is reported down, acknowledgements
   are still served, and no new batch is taken once the uncommitted window is full.

A failed lookup or delivery rewinds the consumer to the batch's first offsets and retries
with backoff: no message is skipped, and nothing is committed that was not acknowledged.
Only a dependency's failure is retried that way: a message whose own data makes the lookup or
the model raise is isolated from its batch (`streaming.isolation`) and dead-lettered
(`unprocessable`), and its batch-mates are scored. A transaction id seen again with other
content is handled by the duplicate policy (`streaming.duplicates`).

Rebalances (cooperative-sticky): librdkafka runs the callbacks inside `consume()`; the
revocation callback first waits for every batch in flight to be acknowledged and commits it
synchronously (the only synchronous commit: the next owner starts from the committed offset
once the callback returns; bounded by librdkafka's `session.timeout.ms` / `socket.timeout.ms`,
and skipped while commits stall, leaving the partitions to be re-read), so partitions are
never given up with work in flight. Messages of a partition revoked during that very
`consume()` call are dropped unprocessed (and uncommitted): the partition's next owner reads
them. SIGTERM/SIGINT finish the batch in hand, commit (waiting a bounded time for the
confirmations), leave the group, and exit 0.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cardscore.core.gc_tuning import PauseRecorder, freeze_after_warmup
from cardscore.core.logs import get_logger
from cardscore.features.feature_sets import served_sets
from cardscore.model.served_release import serving_watcher
from cardscore.model.watcher import LoadedModel, ModelUnavailable, ModelWatcher, publish_model
from cardscore.schemas.contracts import EVENT_TIME_MAX_US, EVENT_TIME_MIN_US
from cardscore.schemas.reasons import RejectReason
from cardscore.streaming.commits import CommitsStalled, OffsetCommits
from cardscore.streaming.delivery import (
    AtLeastOnce,
    DeliveryFailed,
    ExactlyOnce,
    OutRecord,
    default_instance_id,
    message_limit,
    producer_conf,
)
from cardscore.streaming.dlq import DUPLICATE_FIRST, dlq_record, dlq_reference, fit_dlq_record
from cardscore.streaming.duplicates import RecentTransactions
from cardscore.streaming.features import BatchFeatures, Lookup, open_lookup
from cardscore.streaming.isolation import DependencyFailure, isolate
from cardscore.streaming.messages import (
    Rejected,
    TransactionBatch,
    batch_of,
    first_offsets,
    next_offsets,
    split_messages,
)
from cardscore.streaming.metrics import FRESH_ENTITIES, StreamMetrics
from cardscore.streaming.output import (
    DUPLICATE_CONFLICT_HEADER,
    SCORE_HEADERS,
    ScoreColumns,
    score_keys,
    score_values,
)
from cardscore.streaming.pipelined import InFlight, PipelinedAtLeastOnce, PipelineFailed
from cardscore.streaming.polling import CONSUMER_DEFAULTS, take_batch
from cardscore.streaming.progress import Progress
from cardscore.streaming.release import (
    ReleaseMetrics,
    ReleaseWatcher,
    release_columns,
    score_batch,
    served_layout,
)

if TYPE_CHECKING:
    from cardscore.core.config import Settings
    from cardscore.features.fresh_online import FreshRows

log = get_logger("streaming.scorer")

# Options the scorer's correctness depends on, whatever the configuration says.
_CONSUMER_REQUIRED = {
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    "partition.assignment.strategy": "cooperative-sticky",
}


def consumer_conf(settings: Settings, group_id: str, instance_id: str, static: bool = False) -> dict[str, str]:
    """The scorer's consumer configuration; `static`: join as a static member named
    `instance_id` (`group.instance.id`), so a restart under the same name takes its partitions
    back at once instead of waiting for the old session to expire."""
    conf = {**CONSUMER_DEFAULTS, **settings.kafka_conf("consumer")}
    conf.setdefault("client.id", f"cardscore-stream-{instance_id}")
    conf["group.id"] = group_id
    if static:
        conf["group.instance.id"] = instance_id
    conf.update(_CONSUMER_REQUIRED)
    return conf


def fresh_columns(fresh: FreshRows | None) -> dict[str, Any]:
    """The score message's fresh-feature fields (`ScoreColumns` keyword arguments)."""
    if fresh is None:
        return {}
    return {"fresh_names": fresh.names, "fresh_values": fresh.matrix,
            "fresh_card_as_of_us": fresh.card_as_of_us, "fresh_terminal_as_of_us": fresh.terminal_as_of_us}


@dataclass
class ScoredRows:
    """The outcome of scoring a batch's valid rows: score records for some rows, the rest
    isolated as unprocessable."""

    records: list[OutRecord] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # rows of the batch that were scored
    unknown_customers: int = 0
    unknown_terminals: int = 0
    rejected: list[Rejected] = field(default_factory=list)


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
    flagged: int = 0  # scored copies of an id seen before with other content (score_flagged)


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
        # An instance named by the operator is a static group member (unless turned off): a
        # restart under the same name resumes its partitions without a rebalance.
        self.static_member = instance_id is not None and cfg.static_membership
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
        self.watcher = watcher or serving_watcher(
            settings, cfg.model_alias, cfg.model_poll_seconds, cfg.model_threads,
            metrics=ReleaseMetrics(self.metrics.registry), log_prefix="stream", scorer="stream scorer",
            served=served_sets(cfg.fresh_features))
        self.backoff = Backoff(cfg.retry_initial_seconds, cfg.retry_max_seconds)
        self._stop = threading.Event()
        self._assigned: set[tuple[str, int]] = set()
        self._revoked_in_call: set[tuple[str, int]] = set()
        self._fatal: KafkaError | None = None
        self._lag_due = 0.0
        self._idle_since = time.monotonic()
        self._lag_labels: set[tuple[str, int]] = set()
        self._store_checked_at = 0.0
        self._rewind_after_consume: dict[tuple[str, int], int] = {}
        self._gc_pauses = PauseRecorder()
        self._frozen = False  # the garbage collector's start-up heap (frozen after the warm-up)
        self._rebalances = 0  # rebalance callbacks run so far (a batch held across one is re-read)
        self._carry: list[Message] = []  # taken while waiting for room: the next batch starts with them
        self.commits = OffsetCommits(self.metrics)  # its on_commit is the consumer's
        self.consumer: Consumer | None = None
        self.delivery: AtLeastOnce | ExactlyOnce | None = None
        self.dlq_max_bytes = 0  # the largest DLQ record the producer and topic take (at start)
        self.recent = RecentTransactions(cfg.duplicate_window)
        self.progress = Progress(cfg.progress_interval_seconds)
        self.totals: Counter[str] = self.progress.totals  # messages, scored, dlq, retries, ...

    # ------------------------------------------------------------------ lifecycle

    def stop(self, *_args: Any) -> None:
        """Ask the loop to finish the batch in hand, commit and leave (signal-safe)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> int:
        log.info("stream.starting", group=self.group_id, instance=self.instance_id,
                 static_member=self.static_member, topic=self.topics.transactions,
                 delivery=self.cfg.delivery, batch_max_messages=self.cfg.batch_max_messages)
        if not self._wait_for_model():
            return 0  # stopped before any model existed: nothing was consumed
        conf = consumer_conf(self.settings, self.group_id, self.instance_id, self.static_member)
        self.consumer = Consumer({**conf, **self.commits.consumer_conf(), "error_cb": self._consumer_error})
        # Join the group now: librdkafka joins in the background while the feature store opens
        # (seconds of imports); the assignment waits in the queue for the first consume().
        self.consumer.subscribe(
            [self.topics.transactions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("stream.subscribed", group=self.group_id,
                 member="static" if self.static_member else "dynamic",
                 session_timeout_ms=int(conf["session.timeout.ms"]))
        self._idle_since = time.monotonic()
        self._gc_pauses.start()
        try:
            if not self._open_lookup():
                return 0
            self.delivery = self._make_delivery()
            self._warm_up()
            while not self._stop.is_set():
                self._gc_pauses.observe(self.metrics.gc_pause)
                self._refresh_model()
                self._refresh_lag()
                self._refresh_store_status()
                self.progress.maybe_log(model_version=self.watcher.current.version if self.watcher.current else None)
                self._collect()
                if self.delivery.pending:
                    self.delivery.commit_pending()
                messages = self._consume()
                if not messages and self._in_flight():
                    self._collect(timeout=0.002)  # nothing new: serve the acknowledgements
                report = self.process(messages)
                if report.messages or not self._assigned:
                    self._idle_since = time.monotonic()  # idle means: partitions, but no messages
                elif (self.idle_exit_seconds is not None
                      and time.monotonic() - self._idle_since >= self.idle_exit_seconds):
                    log.info("stream.idle_exit", idle_seconds=self.idle_exit_seconds)
                    break
        finally:
            self._gc_pauses.stop()
            self._shutdown()
        return 0

    def _consume(self) -> list[Message]:
        """What is queued, at once; else the first message within batch_max_wait_ms plus what
        queued behind it (no waiting while a batch's acknowledgements are due)."""
        assert self.consumer is not None
        self._revoked_in_call.clear()
        carry, self._carry = self._carry, []
        if isinstance(self.delivery, PipelinedAtLeastOnce) and self.delivery.commits_stalled():
            # Acknowledged output waits for its commit and the coordinator does not confirm:
            # take no new batch (the uncommitted window stays bounded), only serve callbacks
            # (the confirmation, or the failure that gets the commit sent again).
            self._rewind(carry, only_assigned=True)
            self.delivery.commits.serve(0.05)
            if self._fatal is not None:
                raise KafkaException(self._fatal)
            return self._drop_rewound([])
        wait = 0.0 if self._in_flight() or carry else self.cfg.batch_max_wait_ms / 1000
        try:
            room = self.cfg.batch_max_messages - len(carry)
            messages = carry + (take_batch(self.consumer, room, wait,
                                           self.metrics.stage_latency.labels("consume").observe)
                                if room > 0 else [])
            if room > 0:
                self.commits.mark_served()  # commit confirmations were served first
        except KafkaException as exc:
            self.metrics.errors.labels("consume").inc()
            log.warning("stream.consume_failed", error=str(exc))
            self._rewind(carry, only_assigned=True)
            return []
        if messages:
            self._broker_answered()
        good: list[Message] = []
        for message in messages:
            err = message.error()
            if err is None:
                good.append(message)
            elif err.code() != KafkaError._PARTITION_EOF:
                self._consumer_error(err)
        if self._fatal is not None:
            raise KafkaException(self._fatal)  # the consumer cannot continue: exit 1
        return self._drop_rewound(self._drop_revoked(good))

    def _drop_rewound(self, messages: list[Message]) -> list[Message]:
        """After a delivery failure seen inside consume() (a rebalance drained the pipeline):
        rewind those partitions and drop what this call returned of them (it comes after the
        failed batches, and is read again after them)."""
        if not self._rewind_after_consume:
            return messages
        rewind, self._rewind_after_consume = self._rewind_after_consume, {}
        self._seek(rewind)
        return [m for m in messages if (m.topic(), m.partition()) not in rewind]

    def _consumer_error(self, err: KafkaError) -> None:
        """Client-level errors (error_cb and error events): librdkafka reconnects by itself;
        only a fatal error stops the scorer."""
        self.metrics.errors.labels("consume").inc()
        if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT):
            self.metrics.dependency_up.labels("broker").set(0)
        # A fatal error arrives as an event of code _FATAL whose own fatal() is false (seen on
        # Apache Kafka when a static member is fenced by another with its group.instance.id).
        fatal = err.fatal() or err.code() == KafkaError._FATAL
        log.warning("stream.consumer_error", code=err.name(), fatal=fatal, detail=err.str())
        if fatal:
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
        log.info("stream.stopping", **self.progress.fields())
        try:
            if isinstance(self.delivery, PipelinedAtLeastOnce):
                try:
                    self.delivery.drain()  # the batches in flight, then their commit
                except PipelineFailed as exc:  # not committed: read again after a restart
                    log.warning("stream.drain_failed", error=str(exc))
            if self.delivery is not None:
                # Not a synchronous commit: that one has no timeout of its own and, with the
                # coordinator gone, waits for librdkafka's (up to socket.timeout.ms, 60 s).
                # What stays unconfirmed is read again after the restart.
                self.delivery.flush(min(10.0, self.cfg.delivery_timeout_seconds))
            if self.consumer is not None:
                # Revokes (the revocation commits what is pending, unless commits stall) and
                # leaves the group; librdkafka serves the outstanding commits' callbacks here.
                self.consumer.close()
        except KafkaException as exc:
            log.warning("stream.close_failed", error=str(exc))
        finally:
            if self.delivery is not None:
                self.delivery.close()
            close = getattr(self._lookup, "close", None)
            if close is not None:
                close()  # the online reader's watcher thread and connections
        log.info("stream.stopped", **self.progress.fields())

    def _make_delivery(self) -> AtLeastOnce | ExactlyOnce:
        assert self.consumer is not None
        base = self.settings.kafka_conf("producer")
        timeout = self.cfg.delivery_timeout_seconds
        self.dlq_max_bytes = message_limit(producer_conf(base, timeout), self.topics.dlq)
        if self.cfg.delivery == "exactly_once":
            txn_id = f"{self.cfg.transactional_id_prefix}-{self.instance_id}"
            return ExactlyOnce(base, self.consumer, self.metrics, timeout, txn_id)
        # Pipelined: batches are scored while earlier ones' acknowledgements come in; at most
        # `max_uncommitted` messages (one batch unless configured) are produced and not yet committed.
        return PipelinedAtLeastOnce(base, self.consumer, self.metrics, timeout,
                                    max_uncommitted=self.cfg.max_uncommitted, commits=self.commits)

    def _in_flight(self) -> bool:
        return isinstance(self.delivery, PipelinedAtLeastOnce) and bool(self.delivery.batches)

    def _collect(self, timeout: float = 0.0) -> None:
        """Serve acknowledgements and commit what they complete; a failed batch rewinds."""
        if not isinstance(self.delivery, PipelinedAtLeastOnce):
            return
        try:
            self.delivery.collect(timeout)
        except PipelineFailed as exc:
            self._retry_pipeline(exc.rewind, exc)

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
                self._lookup = open_lookup(self.settings)
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

    def _broker_answered(self) -> None:
        """The broker answered a fetch or an offset fetch: up, unless commits still stall (then
        they are sent again at once)."""
        if self.delivery is not None:
            self.delivery.broker_answered()
        else:
            self.metrics.dependency_up.labels("broker").set(1)

    def _publish_model(self) -> None:
        assert self.watcher.current is not None
        publish_model(self.metrics, self.watcher.current)

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
            # Also the broker's state when no batch is in flight: librdkafka reports a broker
            # going away once (error_cb), and an acknowledgement that arrives after that report
            # set the gauge back to up.
            self.metrics.dependency_up.labels("broker").set(0)
            return
        self._broker_answered()  # the group coordinator answered (up unless commits stall)
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
        model = self.watcher.current
        assert model is not None and self.delivery is not None
        report.model_version = model.version
        valid, rejected, flagged = self._apply_duplicate_policy(split.valid, list(split.rejected))
        self.metrics.stage_latency.labels("validate").observe(time.perf_counter() - started)
        try:
            scored = self._score(valid, model, flagged)
        except DependencyFailure as exc:
            return self._retry(messages, report, "lookup", exc)
        produce_started = time.perf_counter()
        rejected += scored.rejected
        out = scored.records + self._dlq_records(rejected)
        reasons = dict(Counter(r.reason.value for r in rejected))
        rows = np.asarray(scored.rows, dtype=np.int64)
        scored_batch = valid if len(rows) == len(valid) else valid.take(rows)
        if isinstance(self.delivery, PipelinedAtLeastOnce):
            # Remembered when sent: the next batch's duplicates are judged against this one even
            # before the broker acknowledged it (a re-read copy has the same content: no conflict).
            self.recent.remember(valid, rows)
            return self._send(messages, out, report, reasons, scored_batch, scored, len(flagged),
                              started, produce_started)
        try:
            self.delivery.deliver(out, next_offsets(messages))
        except DeliveryFailed as exc:
            return self._retry(messages, report, "delivery", exc)
        self.recent.remember(valid, rows)
        self._account(report, reasons, scored_batch, scored, len(flagged), started)
        return report

    def _apply_duplicate_policy(
        self, valid: TransactionBatch, rejected: list[Rejected]
    ) -> tuple[TransactionBatch, list[Rejected], dict[int, str]]:
        """Conflicting copies of a transaction id (streaming.duplicates): dead-lettered, or kept
        and flagged (row -> location of the first copy)."""
        conflicts = self.recent.conflicts(valid)
        if not conflicts:
            return valid, rejected, {}
        self.metrics.duplicate_conflicts.inc(len(conflicts))
        log.warning("stream.duplicate_conflicts", messages=len(conflicts), policy=self.cfg.duplicate_conflicts)
        if self.cfg.duplicate_conflicts == "score_flagged":
            return valid, rejected, conflicts
        for row, first in conflicts.items():
            tx = int(valid.transaction_id[row])
            rejected.append(Rejected(
                valid.messages[row], RejectReason.DUPLICATE_CONFLICT,
                f"transaction_id {tx} was seen before with different content, first at {first}",
                headers=((DUPLICATE_FIRST, first.encode()),),
            ))
        keep = np.asarray([r for r in range(len(valid)) if r not in conflicts], dtype=np.int64)
        return valid.take(keep), rejected, {}

    def _score(self, batch: TransactionBatch, model: LoadedModel, flagged: dict[int, str]) -> ScoredRows:
        """Score records for the batch's rows: one lookup and one model call normally; a row
        whose data makes them raise is isolated (`isolate`) and rejected as unprocessable.
        Raises `DependencyFailure` when the online store (or anything the lookup needs) failed."""
        scored = ScoredRows()
        if not len(batch):
            return scored
        scored_at_us = time.time_ns() // 1000
        stage = self.metrics.stage_latency

        def attempt(rows: np.ndarray) -> ScoredRows:
            part = batch if len(rows) == len(batch) else batch.take(rows)
            t0 = time.perf_counter()
            found = self._call_lookup(part)
            seconds = time.perf_counter() - t0
            self.metrics.lookup_latency.observe(seconds)
            stage.labels("lookup").observe(seconds)
            if found.fresh is not None:
                self._observe_fresh(found.fresh, part.event_time_us)
            t0 = time.perf_counter()
            matrix = found.in_layout(served_layout(model))
            scored_release = score_batch(model, matrix, part.customer_id)  # the release's arms
            seconds = time.perf_counter() - t0
            self.metrics.scoring_latency.observe(seconds)
            stage.labels("predict").observe(seconds)
            values = score_values(
                ScoreColumns(
                    transaction_id=part.transaction_id,
                    customer_id=part.customer_id,
                    terminal_id=part.terminal_id,
                    event_time_us=part.event_time_us,
                    **release_columns(scored_release),  # score, model, arm, fallback, shadow
                    feature_snapshot_date=found.snapshot_date,
                    unknown_customer=~found.customer_known,
                    unknown_terminal=~found.terminal_known,
                    scored_at_us=scored_at_us,
                    **fresh_columns(found.fresh),
                )
            )
            scores_topic = self.topics.scores
            if flagged:
                records = [
                    OutRecord(scores_topic, key, value, _score_headers(flagged.get(int(row))))
                    for key, value, row in zip(score_keys(part.transaction_id), values, rows.tolist(), strict=True)
                ]
            else:  # the common case: one shared header list
                records = [
                    OutRecord(scores_topic, key, value, SCORE_HEADERS)
                    for key, value in zip(score_keys(part.transaction_id), values, strict=True)
                ]
            return ScoredRows(records, rows.tolist(), int((~found.customer_known).sum()),
                              int((~found.terminal_known).sum()))

        isolated = isolate(len(batch), attempt, lambda: self._probe(model))
        self._store_ok()
        for _rows, part in isolated.parts:
            scored.records += part.records
            scored.rows += part.rows
            scored.unknown_customers += part.unknown_customers
            scored.unknown_terminals += part.unknown_terminals
        for row, exc in isolated.poison:
            scored.rejected.append(Rejected(
                batch.messages[row], RejectReason.UNPROCESSABLE,
                f"scoring failed on this message alone: {type(exc).__name__}: {exc}",
            ))
        if isolated.poison:
            # Types and places only: exception texts may quote the payload.
            log.warning("stream.isolated", messages=len(isolated.poison), attempts=isolated.attempts,
                        errors=sorted({type(exc).__name__ for _, exc in isolated.poison}),
                        sources=[_where(batch.messages[row]) for row, _ in isolated.poison][:10])
        return scored

    def _observe_fresh(self, fresh: FreshRows, event_time_us: np.ndarray) -> None:
        """How far behind each transaction the fresh-stream pipeline's rows were (event time):
        what explains a served value that differs from the offline one."""
        for entity, as_of in zip(FRESH_ENTITIES, (fresh.card_as_of_us, fresh.terminal_as_of_us), strict=True):
            stored = as_of >= 0
            missing = int((~stored).sum())
            if missing:
                self.metrics.fresh_rows_missing.labels(entity).inc(missing)
            behind = np.maximum(event_time_us[stored] - as_of[stored], 0) / 1e6
            self.metrics.fresh_lag.observe_many(behind, entity)

    def _dlq_records(self, rejected: list[Rejected]) -> list[OutRecord]:
        """DLQ records of the rejected messages, cut to what the DLQ topic takes."""
        out: list[OutRecord] = []
        now_us = time.time_ns() // 1000
        for item in rejected:
            record = dlq_record(item, self.scorer_name, now_us, self.cfg.dlq_detail_max_chars)
            fitted = fit_dlq_record(record, self.dlq_max_bytes) if self.dlq_max_bytes else record
            if fitted is not record:
                self.metrics.dlq_truncated.inc()
                log.warning("stream.dlq_record_truncated", source=_where(item.message),
                            bytes=len(record.value or b""), limit=self.dlq_max_bytes)
            reference = dlq_reference(record)
            fallback = OutRecord(self.topics.dlq, reference.key, reference.value, reference.headers)
            out.append(OutRecord(self.topics.dlq, fitted.key, fitted.value, fitted.headers, fallback=fallback))
        return out

    def _send(self, messages: Sequence[Message], out: list[OutRecord], report: BatchReport,
              reasons: dict[str, int], scored_batch: TransactionBatch, scored: ScoredRows, flagged: int,
              started: float, produce_started: float) -> BatchReport:
        """Hand the batch's output to the producer and return; it is accounted for (metrics,
        totals, on_batch) when the broker acknowledged all of it (`PipelinedAtLeastOnce`)."""
        assert isinstance(self.delivery, PipelinedAtLeastOnce)
        rebalances = self._rebalances
        carry: list[Message] = []  # taken with the confirmations: they follow this batch
        waiting = time.perf_counter()
        try:
            self.delivery.wait_for_room(len(out), carry)
        except PipelineFailed as exc:
            # Earlier batches failed: this one (not produced yet) is read again after them.
            rewind = dict(exc.rewind)
            for key, offset in first_offsets([*messages, *carry]).items():
                rewind[key] = min(offset, rewind.get(key, offset))
            return self._retry_pipeline(rewind, exc, report)
        except CommitsStalled as exc:
            # Earlier output's commit is not confirmed: producing more would widen what a
            # crash re-delivers. Read this batch again once commits recover (`_consume` takes
            # nothing new meanwhile), without a backoff: the loop goes on serving.
            return self._put_back([*messages, *carry], report, "commit", str(exc))
        if self._rebalances != rebalances:
            # Confirmations were served through the consumer and a rebalance ran meanwhile:
            # some of this batch's partitions may be gone, or rewound. Read it again.
            return self._put_back([*messages, *carry], report, "rebalance", "rebalance while waiting for room")
        self._carry = carry
        room_seconds = time.perf_counter() - waiting
        self.metrics.stage_latency.labels("room").observe(room_seconds)

        def acknowledged(_batch: InFlight) -> None:
            self._account(report, reasons, scored_batch, scored, flagged, started)

        self.delivery.send(out, next_offsets(messages), first_offsets(messages), acknowledged)
        self.metrics.stage_latency.labels("produce").observe(time.perf_counter() - produce_started - room_seconds)
        return report

    def _probe(self, model: LoadedModel) -> None:
        """A known-good made-up transaction through the lookup and the model."""
        found = self._call_lookup(_probe_batch(), probe=True)
        score_batch(model, found.in_layout(served_layout(model)), np.zeros(1, dtype=np.int64))

    def _warm_up(self) -> None:
        """Before the first message: the first lookup and model call on a made-up transaction,
        then the start-up heap is frozen (`freeze_after_warmup`): its full collection (~0.2 s
        measured) would otherwise stall the first live batch. If the probe fails, the first
        batch warms up instead and the heap is frozen after it."""
        assert self.watcher.current is not None
        try:
            self._probe(self.watcher.current)
        except Exception as exc:
            log.warning("stream.warm_up_failed", error=type(exc).__name__)
            return
        self._freeze_heap()

    def _freeze_heap(self) -> None:
        self._frozen = True
        log.info("stream.gc_frozen", **freeze_after_warmup())

    def _call_lookup(self, batch: Any, probe: bool = False) -> BatchFeatures:
        assert self._lookup is not None
        if probe and hasattr(self._lookup, "probe"):
            return self._lookup.probe(batch)  # answers without recording the made-up transaction
        return self._lookup(batch)

    def _store_ok(self) -> None:
        """A lookup succeeded: the store is up, unless the reader (serving from memory) says
        it could not reach it lately."""
        status = getattr(self._lookup, "status", None)
        up = status()["store_up"] if status is not None else True
        self.metrics.dependency_up.labels("online_store").set(1 if up else 0)

    def _refresh_store_status(self) -> None:
        """Once a second, what the reader knows of the store (a snapshot reader keeps serving
        through an outage: the metric still says the store is away)."""
        now = time.monotonic()
        if now - self._store_checked_at >= 1.0 and hasattr(self._lookup, "status"):
            self._store_checked_at = now
            self._store_ok()

    def _account(self, report: BatchReport, reasons: dict[str, int], scored_batch: TransactionBatch,
                 scored: ScoredRows, flagged: int, started: float) -> None:
        m = self.metrics
        now = time.time()
        report.scored = len(scored_batch)
        report.dlq = reasons
        report.flagged = flagged
        m.messages_in.inc(report.messages)
        m.scores_out.inc(report.scored)
        m.batch_size.observe(report.messages)
        for reason, count in reasons.items():
            m.dlq.labels(reason).inc(count)
        if scored_batch.key_mismatches:
            m.key_mismatches.inc(scored_batch.key_mismatches)
        if len(scored_batch):
            m.unknown_entities.labels("customer").inc(scored.unknown_customers)
            m.unknown_entities.labels("terminal").inc(scored.unknown_terminals)
            m.e2e_latency.observe_many(now - scored_batch.event_time_us / 1e6, "event_time")
            stamped = scored_batch.kafka_timestamp_ms[scored_batch.kafka_timestamp_ms >= 0]
            m.e2e_latency.observe_many(now - stamped / 1e3, "kafka_timestamp")
        m.batch_latency.observe(time.perf_counter() - started)
        self.backoff.reset()
        if not self._frozen:  # the warm-up's probe failed: warm now, a batch went through
            self._freeze_heap()
        self.progress.batch(report.messages, report.scored, reasons, flagged)
        log.debug("stream.batch", messages=report.messages, scored=report.scored, dlq=reasons,
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
        self.progress.retry()
        if self.on_batch is not None:
            self.on_batch(report)
        self._wait(delay)
        return report

    def _put_back(self, messages: Sequence[Message], report: BatchReport, stage: str, why: str) -> BatchReport:
        """A scored batch that must not be produced now: rewind it (partitions still ours) so
        the next consume reads it again; nothing of it was produced or committed."""
        self.metrics.retries.labels(stage).inc()
        log.warning("stream.batch_put_back", stage=stage, reason=why, messages=len(messages))
        self._rewind(messages, only_assigned=True)
        report.retried = stage
        self.progress.retry()
        if self.on_batch is not None:
            self.on_batch(report)
        return report

    def _retry_pipeline(self, rewind: dict[tuple[str, int], int], exc: Exception,
                        report: BatchReport | None = None) -> BatchReport:
        """Batches in flight failed: rewind the partitions still ours to their first offsets
        (nothing from there on was committed) and back off."""
        report = report or BatchReport()
        delay = self.backoff.next()
        self.metrics.errors.labels("delivery").inc()
        self.metrics.retries.labels("delivery").inc()
        log.warning("stream.batch_retry", stage="delivery", error=str(exc)[:500], partitions=len(rewind),
                    retry_in=delay)
        self._seek(rewind)
        report.retried = "delivery"
        self.progress.retry()
        if self.on_batch is not None:
            self.on_batch(report)
        self._wait(delay)
        return report

    def _seek(self, offsets: dict[tuple[str, int], int]) -> None:
        for (topic, partition), offset in offsets.items():
            if (topic, partition) in self._assigned:
                self._seek_one(topic, partition, offset)

    def _rewind(self, messages: Sequence[Message], only_assigned: bool = False) -> None:
        assert self.consumer is not None
        for (topic, partition), offset in first_offsets(messages).items():
            if only_assigned and (topic, partition) not in self._assigned:
                continue
            self._seek_one(topic, partition, offset)

    def _seek_one(self, topic: str, partition: int, offset: int) -> None:
        assert self.consumer is not None
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
        self._rebalances += 1
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
        self._rebalances += 1
        self.recent.forget(keys)  # their next owner starts its own window
        # Batches in flight are acknowledged first (see the module docstring); then the
        # acknowledged offsets, and any whose commit failed earlier, are committed before the
        # partitions go.
        if isinstance(self.delivery, PipelinedAtLeastOnce):
            try:
                self.delivery.drain()
            except PipelineFailed as exc:  # the still-assigned ones are rewound after consume()
                for key, offset in exc.rewind.items():
                    if key not in keys:
                        self._rewind_after_consume[key] = min(offset, self._rewind_after_consume.get(key, offset))
                log.warning("stream.drain_failed", error=str(exc))
        if self.delivery is not None:
            # Synchronous, unlike every other commit: see OffsetCommits.commit_sync (why, its
            # bounds, and why it is skipped while commits stall).
            self.delivery.commit_sync(keys)
            self.delivery.forget(keys)
        self._give_up(consumer, partitions, keys, "revoked")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(p.topic, p.partition) for p in partitions}
        self._rebalances += 1
        self.recent.forget(keys)
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



def _score_headers(duplicate_of: str | None) -> list[tuple[str, bytes]]:
    if duplicate_of is None:
        return SCORE_HEADERS
    return [*SCORE_HEADERS, (DUPLICATE_CONFLICT_HEADER, duplicate_of.encode())]


def _probe_batch() -> TransactionBatch:
    """A known-good transaction for telling a broken dependency from a poison message: entity
    ids 0, amount 0, now (inside the contract's event-time range)."""
    now_us = min(max(time.time_ns() // 1000, EVENT_TIME_MIN_US), EVENT_TIME_MAX_US)
    return batch_of([{"transaction_id": 0, "event_time": now_us, "customer_id": 0, "terminal_id": 0, "amount": 0.0}])


def _where(message: Message) -> str:
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"
