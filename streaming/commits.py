"""Offset commits that never block the scorer: asynchronous, confirmed through `on_commit`.

`consumer.commit(asynchronous=False)` has no timeout in confluent-kafka: it returns when
librdkafka reports the commit's result. With the group coordinator gone, librdkafka defers
the commit until a coordinator is known (up to `session.timeout.ms`, then `_WAIT_COORD`),
and a request already sent to a coordinator that stopped answering waits up to
`socket.timeout.ms` (60 s by default) before it fails and is deferred again. Meanwhile the
scorer's loop stood still: no metric said the broker was away, nothing else progressed.

`OffsetCommits` commits with `commit(asynchronous=True)` and counts an offset as committed
only when the consumer's `on_commit` callback confirms it without error. librdkafka queues
that callback on the consumer queue ahead of fetched messages (high priority), so the next
`consume()`/`poll()` serves it; `serve()` does that without handing any message over.

* acknowledged offsets wait in `pending` (per partition, the highest one) until confirmed;
  a newer commit of a partition supersedes an older one (one later success covers both);
* one commit request is in flight at a time: the offsets acknowledged meanwhile go in the
  next one, sent when it is confirmed. A commit per micro-batch (hundreds per second) queued
  up at an Apache Kafka coordinator that confirms each in ~7 ms, so confirmations fell behind,
  the in-flight window filled with acknowledged output waiting for them, and the scorer
  waited too. A request unconfirmed after `COMMIT_WAIT_SECONDS` (a coordinator gone) no
  longer holds the next one back;
* a failed commit stays pending and is sent again after a backoff, at once when the broker
  answers again (`broker_answered`);
* commits failing, or still unconfirmed by a consume()/poll() that ran `COMMIT_WAIT_SECONDS`
  after they were sent, are `stalled()`: the broker is reported down
  (`dependency_up{dependency="broker"}` 0) until a commit is confirmed again (a slow batch
  that kept the loop from consuming is not a stall: the confirmation may be queued unserved);
* a revoked or lost partition is forgotten: a confirmation that comes for it later is ignored.

The consumer must be created with `consumer_conf()` merged into its configuration (the
callback is a construction-time setting), then `attach()`ed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cardscore.core.logs import get_logger
from cardscore.streaming.metrics import StreamMetrics

log = get_logger("streaming.commits")

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read

COMMIT_WAIT_SECONDS = 1.0  # a coordinator that answers confirms within milliseconds
_BACKOFF_INITIAL, _BACKOFF_MAX = 0.5, 5.0  # an asynchronous commit is cheap to try again

# Errors meaning "the group moved on" (a rebalance, a new generation): not the broker being
# away. Retried like any failure; the rebalance callbacks forget partitions that are not ours.
_MEMBERSHIP = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError.FENCED_INSTANCE_ID,
}


class CommitsStalled(RuntimeError):
    """Commits are failing or unconfirmed: no more output may be produced until they recover."""


def topic_partitions(offsets: Offsets) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in sorted(offsets.items())]


class OffsetCommits:
    """The consumer's offset commits: asynchronous, counted only once confirmed."""

    def __init__(self, metrics: StreamMetrics) -> None:
        self.metrics = metrics
        self.consumer: Consumer | None = None
        self.pending: Offsets = {}  # acknowledged, not confirmed committed
        self.sent: dict[tuple[str, int], tuple[int, float]] = {}  # unconfirmed request: offset, when
        self.confirmed: Offsets = {}  # highest offset the coordinator confirmed, per partition
        self.failing = False  # the last commit failed and none succeeded since
        self.retry_at = 0.0  # monotonic time before which a failed commit is not sent again
        self.backoff = 0.0
        self._reported = False  # stream.commit_waiting was logged for the current stall
        self.served_at = 0.0  # when the consumer's queue was last served (confirmations come first)

    def consumer_conf(self) -> dict[str, Any]:
        """What the consumer's configuration needs for the confirmations to arrive here."""
        return {"on_commit": self.on_commit}

    def attach(self, consumer: Consumer) -> None:
        self.consumer = consumer

    # ------------------------------------------------------------------ state

    def add(self, offsets: Offsets) -> None:
        """Offsets whose output was acknowledged: to be committed."""
        for key, offset in offsets.items():
            if offset > self.confirmed.get(key, -1):
                self.pending[key] = max(offset, self.pending.get(key, -1))

    def is_committed(self, key: tuple[str, int], offset: int) -> bool:
        """Whether the coordinator confirmed `offset` (or more) for the partition, or the
        partition is no longer tracked (forgotten: not this member's to commit)."""
        return (key not in self.pending and key not in self.sent) or self.confirmed.get(key, -1) >= offset

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions revoked or lost: nothing of theirs is committed by this member any more."""
        for key in partitions:
            self.pending.pop(key, None)
            self.sent.pop(key, None)
            self.confirmed.pop(key, None)
        if not self.pending:  # a failure of theirs says nothing about the next commits
            self.failing = False
            self._reported = False

    def mark_served(self) -> None:
        """The consumer's queue was just served (a consume() or poll() of the caller's)."""
        self.served_at = time.monotonic()

    def stalled(self) -> bool:
        """Commits are failing, or one was still unconfirmed when the consumer's queue was served
        `COMMIT_WAIT_SECONDS` after it was sent (a coordinator that answers confirms within
        milliseconds, and librdkafka queues the confirmation ahead of fetched messages)."""
        if not self.pending:
            return False
        if self.failing:
            return True
        return any(self.served_at - at > COMMIT_WAIT_SECONDS for _, at in self.sent.values())

    def watch(self) -> bool:
        """`stalled()`, reporting the broker down (once per stall) when it is."""
        if not self.stalled():
            return False
        self.metrics.dependency_up.labels("broker").set(0)
        if not self._reported:
            self._reported = True
            log.warning("stream.commit_waiting", partitions=len(self.pending), failing=self.failing)
        return True

    def broker_answered(self) -> None:
        """Something else reached the broker (acknowledgements, a fetch, an offset fetch): a
        failed commit is sent again now; the broker is up unless commits still stall."""
        if self.failing and self.pending:
            self.retry_at = 0.0
        if not self.stalled():
            self.metrics.dependency_up.labels("broker").set(1)

    # ------------------------------------------------------------------ committing

    def commit(self, force: bool = False) -> bool:
        """Send an asynchronous commit of the pending offsets not already on their way; never
        blocks. `force` ignores a failure's backoff. True when nothing is pending."""
        self.watch()
        if not self.pending:
            return True
        now = time.monotonic()
        if not force and now < self.retry_at:
            return False
        if any(now - at < COMMIT_WAIT_SECONDS for _, at in self.sent.values()):
            return False  # one in flight: its confirmation sends the next (see the module docstring)
        due = {k: o for k, o in self.pending.items() if self.sent.get(k, (-1, 0.0))[0] < o}
        if not due or self.consumer is None:
            return False
        try:
            self.consumer.commit(offsets=topic_partitions(due), asynchronous=True)
        except KafkaException as exc:  # refused locally (e.g. a fatal consumer error)
            self._failed(due, exc.args[0])
            return False
        for key, offset in due.items():
            self.sent[key] = (offset, now)
        return False

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's `on_commit` (served inside consume/poll/close): the only place an
        offset becomes committed."""
        now = time.monotonic()
        failed: Offsets = {}
        first_error: KafkaError | None = None
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key not in self.pending and key not in self.sent:
                continue  # forgotten (revoked, lost) or committed synchronously meanwhile
            error = tp.error or err
            if error is not None and error.code() != KafkaError._NO_OFFSET:
                failed[key] = tp.offset
                first_error = first_error or error
                continue
            self._confirmed(key, tp.offset, now)
        if failed:
            assert first_error is not None
            self._failed(failed, first_error)

    def commit_sync(self, only: set[tuple[str, int]]) -> bool:
        """Commit the pending offsets of `only` and wait for the result: for a revocation,
        whose partitions' next owner starts from the committed offset once the callback
        returns (an asynchronous result would only be known after that, inside a later
        consume()). Bounded by librdkafka alone (no timeout can be passed): a commit waiting
        for a coordinator fails after `session.timeout.ms`, a request to one that does not
        answer after `socket.timeout.ms`. So it is skipped while commits stall (the
        coordinator is away): the partitions go uncommitted and their next owner re-reads
        them (duplicates, never a loss). True when nothing of `only` is left pending."""
        offsets = {k: o for k, o in self.pending.items() if k in only}
        if not offsets:
            return True
        if self.stalled() or self.consumer is None:
            log.warning("stream.commit_skipped", partitions=len(offsets), reason="commits stalled")
            return False
        started = time.monotonic()
        try:
            result = self.consumer.commit(offsets=topic_partitions(offsets), asynchronous=False)
        except KafkaException as exc:
            self._failed(offsets, exc.args[0])
            return False
        self.on_commit(None, result or [])
        log.info("stream.commit_sync", partitions=len(offsets), seconds=round(time.monotonic() - started, 4))
        return not any(k in self.pending for k in only)

    def serve(self, timeout: float, keep: list[Message] | None = None, limit: int = 0) -> None:
        """Serve the consumer's callbacks (commit confirmations come first) for up to
        `timeout`. A message that comes back with them is appended to `keep` while it holds
        fewer than `limit` (the caller processes it next, in order), else sought back to, so
        the next consume() reads it again (a seek drops the partition's prefetched messages:
        keeping them is cheaper)."""
        if self.consumer is None:
            return
        messages = self.consumer.consume(1, timeout)
        self.mark_served()
        for message in messages:
            if message.error() is not None:
                continue  # an event (the scorer's consume() reports those)
            if keep is not None and len(keep) < limit:
                keep.append(message)
                continue
            tp = TopicPartition(message.topic(), message.partition(), message.offset())
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                # Seek refused: re-assign at that offset instead (as the scorer's rewind does).
                log.warning("stream.seek_failed", topic=tp.topic, partition=tp.partition, error=str(exc))
                self.consumer.incremental_unassign([TopicPartition(tp.topic, tp.partition)])
                self.consumer.incremental_assign([tp])

    def flush(self, timeout: float) -> bool:
        """Commit everything pending and serve confirmations for up to `timeout` (shutdown:
        bounded, unlike a synchronous commit). True when nothing is left pending."""
        deadline = time.monotonic() + timeout
        self.commit(force=True)
        while self.pending and time.monotonic() < deadline:
            self.serve(min(0.05, max(deadline - time.monotonic(), 0.0)))
            self.commit()
        if self.pending:
            log.warning("stream.commit_unconfirmed", partitions=len(self.pending), waited=timeout)
        return not self.pending

    # ------------------------------------------------------------------ outcomes

    def _confirmed(self, key: tuple[str, int], offset: int, now: float) -> None:
        sent = self.sent.get(key)
        if sent is not None and sent[0] <= offset:
            del self.sent[key]
            self.metrics.stage_latency.labels("commit").observe(now - sent[1])
        best = self.confirmed.get(key, -1)
        if offset < best:
            # A late success of an older commit: the coordinator now holds the older offset.
            # Commit the newer one again (at-least-once holds either way; this keeps the
            # committed offset from staying behind).
            self.pending[key] = max(best, self.pending.get(key, -1))
        else:
            self.confirmed[key] = offset
            if self.pending.get(key, -1) <= offset:
                self.pending.pop(key, None)
        self.metrics.commits.inc()
        if self.failing or self._reported:
            log.info("stream.commit_recovered", partitions=len(self.pending))
        self.failing = False
        self._reported = False
        self.backoff = 0.0
        if not self.stalled():
            self.metrics.dependency_up.labels("broker").set(1)  # the coordinator answered

    def _failed(self, offsets: Offsets, err: Any) -> None:
        for key, offset in offsets.items():
            if self.sent.get(key, (None, 0.0))[0] == offset:
                del self.sent[key]  # sent again after the backoff
        code = err.code() if isinstance(err, KafkaError) else None
        self.metrics.errors.labels("commit").inc()
        self.failing = True
        if code not in _MEMBERSHIP:
            self.metrics.dependency_up.labels("broker").set(0)
        self.backoff = min(max(2 * self.backoff, _BACKOFF_INITIAL), _BACKOFF_MAX)
        self.retry_at = time.monotonic() + self.backoff
        log.warning("stream.commit_failed", error=str(err), partitions=len(offsets), retry_in=self.backoff)
