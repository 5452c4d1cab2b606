"""Getting a batch's output to the broker and its input offsets committed: two guarantees.

* `AtLeastOnce` (default): an idempotent producer (acks=all) sends the batch's scores and DLQ
  records; the batch's offsets are committed only after the broker acknowledged every one of
  them, asynchronously, and count as committed once `on_commit` confirms them
  (`streaming.commits`). A crash before the confirmation re-delivers the batch: duplicates are
  possible only within that uncommitted window, and are identifiable by key (the transaction id).
* `ExactlyOnce`: a transactional producer writes the records and the consumer offsets in one
  Kafka transaction (`send_offsets_to_transaction`). Readers of the scores topic must use
  `isolation.level=read_committed`. Needs a real Kafka cluster: the embedded broker (Tansu)
  does not implement read_committed; tests/kafka proves it on Apache Kafka.

Both raise `DeliveryFailed` when the batch must be retried (the scorer rewinds the consumer to
the batch's first offsets) and `FatalDeliveryError` when the process must stop (fenced).

A record refused for its size (librdkafka's `message.max.bytes` when producing, the topic's
`max.message.bytes` at the broker) is permanent, not transient: retrying would fail forever.
A record that carries a `fallback` (a DLQ record's cut copy, see `dlq.fit_dlq_record`) is sent
as that fallback instead; from then on records of that topic at least as large go out as their
fallback at once. A refused record without one fails the batch (retried) and is logged.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from cardscore.core.logs import get_logger
from cardscore.streaming.commits import OffsetCommits, Offsets, topic_partitions
from cardscore.streaming.metrics import StreamMetrics

log = get_logger("streaming.delivery")

# Errors meaning "this record is too large": permanent for the record, not for the batch.
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default message.max.bytes


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    fallback: OutRecord | None = None  # what to send if this one is refused for its size

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"") + sum(len(k) + len(v) for k, v in self.headers)


def too_large(err: KafkaError | None) -> bool:
    return err is not None and err.code() in _TOO_LARGE


def message_limit(conf: Mapping[str, str], topic: str, timeout: float = 5.0) -> int:
    """The largest record `topic` takes from a producer with `conf`: the smaller of the
    producer's `message.max.bytes` and the topic's `max.message.bytes` when the broker
    reports it (a broker that does not report it is taken at the producer's word)."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    limit = int(conf.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
    admin_conf = {k: v for k, v in conf.items() if k in _ADMIN_KEYS or k.startswith(("sasl.", "ssl."))}
    try:
        admin = AdminClient({**admin_conf, "log_level": "3"})
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=timeout)
        for future in futures.values():
            entry = future.result(timeout=timeout).get("max.message.bytes")
            if entry is not None and entry.value is not None:
                limit = min(limit, int(entry.value))
    except (KafkaException, ValueError, TimeoutError) as exc:
        log.warning("stream.topic_limit_unknown", topic=topic, error=str(exc)[:200], using=limit)
    return limit


_ADMIN_KEYS = {"bootstrap.servers", "security.protocol", "client.id", "socket.timeout.ms"}


_TIMEOUT_GROWTH = 8  # the longest delivery timeout, in multiples of the configured one


class DeliveryFailed(RuntimeError):
    """The batch's output was not (entirely) acknowledged; rewind and retry the batch."""


class FatalDeliveryError(RuntimeError):
    """The producer cannot continue (e.g. fenced by another instance): stop the process."""


def producer_conf(base: Mapping[str, str], timeout_seconds: float) -> dict[str, str]:
    # linger.ms 1: a score waits at most 1 ms for batch-mates (the scorer hands a whole batch
    # over at once, so batches form anyway; 5 ms was a floor under every score's latency).
    # socket.nagle.disable: librdkafka leaves Nagle's algorithm on (the Java clients set
    # TCP_NODELAY), so a small produce request can wait behind the broker's delayed ACK.
    conf = {"linger.ms": "1", "compression.type": "lz4", "socket.nagle.disable": "true", **dict(base)}
    # The guarantees below hold whatever the configuration says.
    conf.update(
        {
            "enable.idempotence": "true",
            "acks": "all",
            # A message not acknowledged in time fails instead of lingering in the queue, so a
            # batch either is acknowledged within the timeout or is retried as a whole.
            "message.timeout.ms": str(int(timeout_seconds * 1000)),
        }
    )
    return conf


def _on_delivery(failures: list[tuple[KafkaError, OutRecord]], record: OutRecord,
                 err: KafkaError | None, _msg: Any) -> None:
    if err is not None:
        failures.append((err, record))


class _Sender:
    """Produces records and collects their delivery reports."""

    def __init__(self, conf: dict[str, str], metrics: StreamMetrics) -> None:
        self.conf = conf
        self.metrics = metrics
        self.fatal: KafkaError | None = None
        conf = {**conf, "error_cb": self._on_error}
        self.producer = Producer(conf)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
        # Transport errors (broker down) are retried by librdkafka; they show up as slow or
        # failed deliveries, which is what the scorer reports.
        log.warning("stream.producer_error", code=err.name(), fatal=err.fatal(), detail=err.str())

    def produce_all(self, records: Sequence[OutRecord], failures: list[tuple[KafkaError, OutRecord]],
                    refused_at: dict[str, int]) -> None:
        """Produce every record (its fallback when it is too large); delivery errors are
        appended to `failures`. `refused_at`: per topic, the smallest size refused so far."""
        produce = self.producer.produce
        for record in records:
            limit = refused_at.get(record.topic)
            if record.fallback is not None and limit is not None and record.size >= limit:
                record = record.fallback

            while True:
                try:
                    produce(record.topic, value=record.value, key=record.key, headers=record.headers,
                            on_delivery=functools.partial(_on_delivery, failures, record))
                    break
                except BufferError:
                    self.producer.poll(0.05)  # local queue full: serve deliveries, then retry
                except KafkaException as exc:
                    err = exc.args[0]
                    if too_large(err):
                        refused_at[record.topic] = min(record.size, refused_at.get(record.topic, record.size))
                        if record.fallback is not None:
                            log.warning("stream.record_too_large", topic=record.topic, bytes=record.size,
                                        sent="fallback")
                            record = record.fallback
                            continue
                    raise DeliveryFailed(f"the producer refused a record for {record.topic}: {exc}") from exc

    def wait(self, timeout: float) -> int:
        """Serve delivery reports until none is outstanding or `timeout`; returns outstanding."""
        deadline = time.monotonic() + timeout
        remaining = len(self.producer)
        warned = False
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            remaining = self.producer.flush(min(left, 1.0))
            if remaining and not warned:
                warned = True
                self.metrics.dependency_up.labels("broker").set(0)
                log.warning("stream.delivery_waiting", outstanding=remaining)
        return remaining

    def close(self, timeout: float = 5.0) -> None:
        self.producer.flush(timeout)
        # The producer holds a callback bound to this object: drop it so it is freed now.
        self.producer = None  # type: ignore[assignment]


class AtLeastOnce:
    """Idempotent producer; after the acks, an asynchronous commit of exactly the processed
    offsets, counted as committed once `on_commit` confirms it (`streaming.commits`)."""

    mode = "at_least_once"

    def __init__(
        self,
        producer_base: Mapping[str, str],
        consumer: Consumer,
        metrics: StreamMetrics,
        timeout_seconds: float,
        *,
        commits: OffsetCommits,
    ) -> None:
        """`commits`: the `OffsetCommits` whose `consumer_conf()` `consumer` was created with
        (its `on_commit` is the only way a commit is confirmed)."""
        self.consumer = consumer
        self.metrics = metrics
        self.base_timeout = timeout_seconds
        self.timeout = timeout_seconds  # the current producer's message.timeout.ms
        self._producer_base = dict(producer_base)
        self._overdue_in_a_row = 0  # renewals for overdue reports with no acknowledgement between
        self._sender = _Sender(producer_conf(producer_base, timeout_seconds), metrics)
        self.commits = commits
        commits.attach(consumer)
        self.refused_at: dict[str, int] = {}  # topic -> smallest record size refused as too large

    @property
    def pending(self) -> Offsets:
        """Acknowledged offsets not yet confirmed committed."""
        return self.commits.pending

    def deliver(self, records: Sequence[OutRecord], offsets: Offsets) -> None:
        """Send, wait for every acknowledgement, then commit `offsets`. `DeliveryFailed` if
        any record was not acknowledged (nothing is committed then)."""
        self._renew_if_fatal()
        started = time.perf_counter()
        sending = list(records)
        for round_ in (1, 2):  # round 2 sends the fallbacks of records the broker found too large
            failures: list[tuple[KafkaError, OutRecord]] = []
            self._sender.produce_all(sending, failures, self.refused_at)
            # Past message.timeout.ms every record has a report; the margin covers in-flight requests.
            outstanding = self._sender.wait(self.timeout + min(5.0, self.timeout))
            if outstanding:
                self._renew("delivery reports overdue", overdue=True)  # purges the old queue
                raise DeliveryFailed(f"{outstanding} of {len(records)} records unacknowledged")
            if not failures:
                break
            for err, record in failures:
                if too_large(err):
                    self.refused_at[record.topic] = min(record.size, self.refused_at.get(record.topic, record.size))
            sending = [record.fallback for err, record in failures if too_large(err) and record.fallback is not None]
            if round_ == 2 or len(sending) < len(failures):
                err = next((e for e, r in failures if not (too_large(e) and r.fallback is not None)), failures[0][0])
                self._renew_after_failures([e for e, _ in failures])
                raise DeliveryFailed(f"{len(failures)} of {len(records)} records failed; first: {err.str()}")
            log.warning("stream.record_too_large", topic=sending[0].topic, records=len(sending), sent="fallback")
        self.metrics.delivery_latency.observe(time.perf_counter() - started)
        self._overdue_in_a_row = 0
        self.commits.broker_answered()
        self.commits.add(offsets)
        self.commits.commit(force=True)

    def commit_pending(self, force: bool = False) -> bool:
        """Send an asynchronous commit of the acknowledged offsets (never blocks); True when
        nothing is pending. A failed commit stays pending and is sent again after a backoff,
        or with the next batch (its offsets are higher, so one later success covers both).
        `force` ignores the backoff."""
        return self.commits.commit(force)

    def commit_sync(self, only: set[tuple[str, int]]) -> bool:
        """On revocation: commit `only`'s pending offsets and wait for the result (see
        `OffsetCommits.commit_sync` for its bounds and when it is skipped)."""
        return self.commits.commit_sync(only)

    def flush(self, timeout: float) -> bool:
        """At shutdown: commit what is pending, waiting at most `timeout` for confirmations."""
        return self.commits.flush(timeout)

    def broker_answered(self) -> None:
        self.commits.broker_answered()

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        self.commits.forget(partitions)

    def _renew_if_fatal(self) -> None:
        if self._sender.fatal is not None:
            self._renew(f"fatal producer error {self._sender.fatal.name()}")

    def _renew_after_failures(self, errors: Sequence[KafkaError]) -> None:
        """Records the broker did not take: the retry gets a fresh producer. After an outage an
        idempotent producer's own state (its sequence numbers and epoch) can fail every record
        it sends next, and retrying on it would never end; a timed-out record counts as an
        overdue report (the timeout grows)."""
        timed_out = any(e.code() == KafkaError._MSG_TIMED_OUT for e in errors)
        self._renew(f"delivery failed: {errors[0].name()}", overdue=timed_out)

    def _renew(self, why: str, overdue: bool = False) -> None:
        """Start a fresh producer (an idempotent producer in a fatal state refuses new
        messages; an overdue one's queue is purged). Renewals for overdue reports in a row
        double the timeout (at most `_TIMEOUT_GROWTH` times the configured one): a broker that
        needs longer than the timeout to take a new producer (a restart on a loaded machine)
        would otherwise time every retry out before it completes, and the scorer would
        never catch up. The first acknowledgement resets the count."""
        self._overdue_in_a_row += overdue
        growth = min(2 ** self._overdue_in_a_row, _TIMEOUT_GROWTH)
        self.timeout = self.base_timeout * growth
        log.warning("stream.producer_renewed", reason=why, timeout_seconds=self.timeout)
        old = self._sender
        self._sender = _Sender(producer_conf(self._producer_base, self.timeout), self.metrics)
        try:
            old.producer.purge()
            old.close(0)
        except KafkaException:
            pass

    def close(self) -> None:
        self._sender.close()


class ExactlyOnce:
    """Transactional producer: records and offsets commit or abort together."""

    mode = "exactly_once"

    def __init__(
        self,
        producer_base: Mapping[str, str],
        consumer: Consumer,
        metrics: StreamMetrics,
        timeout_seconds: float,
        transactional_id: str,
    ) -> None:
        self.consumer = consumer
        self.metrics = metrics
        self.timeout = timeout_seconds
        conf = producer_conf(producer_base, timeout_seconds)
        conf["transactional.id"] = transactional_id
        conf.setdefault("transaction.timeout.ms", str(int(max(60.0, 2 * timeout_seconds) * 1000)))
        self._sender = _Sender(conf, metrics)
        self.pending: Offsets = {}  # always empty: offsets commit inside each transaction
        self.refused_at: dict[str, int] = {}  # topic -> smallest record size refused as too large
        _retry_txn(lambda: self._sender.producer.init_transactions(timeout_seconds), "init")

    def deliver(self, records: Sequence[OutRecord], offsets: Offsets) -> None:
        producer = self._sender.producer
        failures: list[tuple[KafkaError, OutRecord]] = []
        started = time.perf_counter()
        try:
            producer.begin_transaction()
            try:
                self._sender.produce_all(records, failures, self.refused_at)
            except DeliveryFailed:
                _retry_txn(lambda: producer.abort_transaction(self.timeout), "abort")
                raise
            producer.send_offsets_to_transaction(
                topic_partitions(offsets), self.consumer.consumer_group_metadata(), self.timeout
            )
            _retry_txn(lambda: producer.commit_transaction(self.timeout), "commit")
        except KafkaException as exc:
            err = exc.args[0]
            # Records the broker refused for their size go out as their fallbacks next time.
            for failed, record in failures:
                if too_large(failed):
                    self.refused_at[record.topic] = min(record.size, self.refused_at.get(record.topic, record.size))
            if isinstance(err, KafkaError) and err.txn_requires_abort():
                _retry_txn(lambda: producer.abort_transaction(self.timeout), "abort")
                raise DeliveryFailed(f"transaction aborted: {err.str()}") from exc
            raise FatalDeliveryError(f"transactional producer failed: {exc}") from exc
        if failures:  # commit_transaction fails first in practice; keep the check explicit
            raise DeliveryFailed(f"{len(failures)} records failed; first: {failures[0][0].str()}")
        self.metrics.delivery_latency.observe(time.perf_counter() - started)
        self.metrics.dependency_up.labels("broker").set(1)
        self.metrics.commits.inc()

    def commit_pending(self, force: bool = False) -> bool:
        return True  # offsets commit inside each transaction

    def commit_sync(self, only: set[tuple[str, int]]) -> bool:
        return True

    def flush(self, timeout: float) -> bool:
        return True

    def broker_answered(self) -> None:
        self.metrics.dependency_up.labels("broker").set(1)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        return None

    def close(self) -> None:
        self._sender.close()


def _retry_txn(call: Callable[[], None], what: str, attempts: int = 5) -> None:
    """Retry a transactional API call while librdkafka calls its error retriable."""
    for attempt in range(1, attempts + 1):
        try:
            call()
            return
        except KafkaException as exc:
            err = exc.args[0]
            if not (isinstance(err, KafkaError) and err.retriable()) or attempt == attempts:
                raise
            log.warning("stream.transaction_retry", call=what, attempt=attempt, error=err.str())
            time.sleep(min(0.5 * 2 ** (attempt - 1), 5.0))  # backoff between API retries


def default_instance_id() -> str:
    import os

    return f"{socket.gethostname()}-{os.getpid()}"
