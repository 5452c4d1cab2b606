"""At-least-once delivery without waiting for the broker between batches.

`AtLeastOnce.deliver` produces a batch and then waits for every acknowledgement before the
scorer may consume the next one: at a few thousand events/s that round trip (and the commit
behind it) is most of a batch's latency. `PipelinedAtLeastOnce.send` produces a batch and
returns; the scorer consumes and scores the next batch while the broker acknowledges, and
`collect()` (called every loop iteration) serves the acknowledgements, and commits a batch's
offsets only once every record of that batch, and of every batch before it, was
acknowledged. Commits are asynchronous: an offset counts as committed when the consumer's
`on_commit` confirms it (`streaming.commits`), served by the scorer's next consume(). The
guarantee is the one of `AtLeastOnce`:

* offsets are committed only after the acknowledgements of everything produced up to them;
* a failed or overdue record fails its batch and every batch after it (their offsets are
  higher): none of them is committed, the consumer is rewound to the first of them
  (`DeliveryFailed.rewind`) and they are scored again (duplicates carry the same key);
* at most `max_uncommitted` produced messages are not yet confirmed committed (unacknowledged,
  or acknowledged with their commit unconfirmed: the scorer waits for the oldest batch's
  acknowledgements and commit confirmation before producing more), so a crash re-delivers at
  most that many: the scorer sets it to `batch_max_messages`, the bound of the synchronous
  mode. `wait_for_room` serves the confirmations without taking messages; while commits
  stall (the coordinator away) it raises `CommitsStalled` instead of waiting;
* a record the broker refuses for its size fails its batch like any failure, and the retry
  sends its fallback (a DLQ record's cut copy, `dlq.fit_dlq_record`) as `AtLeastOnce` does;
* rebalances and shutdown call `drain()` first: nothing is given up with work in flight.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from cardscore.core.logs import get_logger
from cardscore.streaming.commits import CommitsStalled, OffsetCommits
from cardscore.streaming.delivery import AtLeastOnce, DeliveryFailed, Offsets, OutRecord, too_large
from cardscore.streaming.metrics import StreamMetrics

log = get_logger("streaming.pipelined")
_WAITING_SECONDS = 1.0  # unacknowledged this long: the broker is reported away (as AtLeastOnce does)


class PipelineFailed(DeliveryFailed):
    """Batches in flight were not (entirely) acknowledged: rewind to `rewind` and retry."""

    def __init__(self, message: str, rewind: Offsets) -> None:
        super().__init__(message)
        self.rewind = rewind


@dataclass
class InFlight:
    """One batch's output, produced and not yet acknowledged (or failed)."""

    offsets: Offsets  # next offsets to commit once acknowledged
    first: Offsets  # where to rewind to when it fails
    records: int
    sent_at: float  # perf_counter when its records were handed to the producer
    on_acked: Callable[[InFlight], None] | None
    outstanding: int = 0
    failures: list[KafkaError] = field(default_factory=list)
    warned: bool = False  # stream.delivery_waiting was logged for it

    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        self.outstanding -= 1
        if err is not None:
            self.failures.append(err)

    def on_delivery_sized(self, record: OutRecord, refused_at: dict[str, int], err: KafkaError | None,
                          msg: Any) -> None:
        """`on_delivery` for a record with a fallback: a size refusal is remembered, so the
        batch's retry sends the fallback (a DLQ record's cut copy) instead."""
        if too_large(err):
            refused_at[record.topic] = min(record.size, refused_at.get(record.topic, record.size))
        self.on_delivery(err, msg)


class PipelinedAtLeastOnce(AtLeastOnce):
    """At-least-once with the acknowledgements of one batch awaited while the next is scored."""

    pipelined = True

    def __init__(
        self,
        producer_base: Mapping[str, str],
        consumer: Consumer,
        metrics: StreamMetrics,
        timeout_seconds: float,
        max_uncommitted: int,
        *,
        commits: OffsetCommits,
    ) -> None:
        super().__init__(producer_base, consumer, metrics, timeout_seconds, commits=commits)
        self.max_uncommitted = max_uncommitted
        self.batches: deque[InFlight] = deque()  # produced, not yet (entirely) acknowledged
        self.acked: deque[InFlight] = deque()  # acknowledged, commit not yet confirmed

    @property
    def in_flight(self) -> int:
        """Produced messages not yet confirmed committed (what a crash would re-deliver)."""
        return sum(b.records for b in self.batches) + sum(b.records for b in self.acked)

    def room_for(self, records: int) -> bool:
        """Whether `records` more may be produced without passing `max_uncommitted` (an empty
        pipeline takes any batch)."""
        return not (self.batches or self.acked) or self.in_flight + records <= self.max_uncommitted

    def send(self, records: Sequence[OutRecord], offsets: Offsets, first: Offsets,
             on_acked: Callable[[InFlight], None] | None = None) -> InFlight:
        """Produce a batch's records and return without waiting for the broker."""
        self._renew_if_fatal()
        batch = InFlight(dict(offsets), dict(first), len(records), time.perf_counter(), on_acked)
        batch.outstanding = len(records)
        produce = self._sender.producer.produce
        poll = self._sender.producer.poll
        refused_at = self.refused_at
        for record in records:
            limit = refused_at.get(record.topic)
            if record.fallback is not None and limit is not None and record.size >= limit:
                record = record.fallback
            while True:
                report = (batch.on_delivery if record.fallback is None
                          else functools.partial(batch.on_delivery_sized, record, refused_at))
                try:
                    produce(record.topic, value=record.value, key=record.key, headers=record.headers,
                            on_delivery=report)
                    break
                except BufferError:
                    poll(0.05)  # local queue full: serve deliveries, then retry
                except KafkaException as exc:  # refused before sending (e.g. its size)
                    err = exc.args[0]
                    if too_large(err) and record.fallback is not None:
                        refused_at[record.topic] = min(record.size, refused_at.get(record.topic, record.size))
                        log.warning("stream.record_too_large", topic=record.topic, bytes=record.size,
                                    sent="fallback")
                        record = record.fallback
                        continue
                    batch.on_delivery(err, None)  # fails the batch: it is rewound and retried
                    break
        self.batches.append(batch)
        self.metrics.in_flight.set(self.in_flight)
        return batch

    def collect(self, timeout: float = 0.0) -> int:
        """Serve acknowledgements (waiting up to `timeout` for one when a batch is in flight),
        send the commit of the leading acknowledged batches' offsets (asynchronous); returns
        how many batches were acknowledged. `PipelineFailed` when a batch failed or is overdue
        (nothing from it on is committed)."""
        done = 0
        if self.batches:
            done = self._serve_acks(timeout)
        if done:
            self.commits.commit(force=True)
        self._release_confirmed()
        return done

    def _serve_acks(self, timeout: float) -> int:
        self._sender.producer.poll(timeout)
        done = 0
        while self.batches and self.batches[0].outstanding <= 0:
            batch = self.batches[0]
            if batch.failures:
                self._renew_after_failures(batch.failures)
                self._fail(f"{len(batch.failures)} of {batch.records} records failed; "
                           f"first: {batch.failures[0].str()}")
            self.batches.popleft()
            self._acknowledged(batch)
            done += 1
        if self.batches:
            head = self.batches[0]
            waited = time.perf_counter() - head.sent_at
            if waited > _WAITING_SECONDS and not head.warned:
                # A broker that answers acknowledges within milliseconds: it is away.
                head.warned = True
                self.metrics.dependency_up.labels("broker").set(0)
                log.warning("stream.delivery_waiting", outstanding=head.outstanding)
            if waited > self.timeout + min(5.0, self.timeout):
                # Past message.timeout.ms every record has a report; this one never came.
                self.metrics.dependency_up.labels("broker").set(0)
                self._renew("delivery reports overdue", overdue=True)
                self._fail(f"{head.outstanding} of {head.records} records unacknowledged")
        return done

    def _release_confirmed(self) -> None:
        """Acknowledged batches whose every offset the coordinator confirmed leave the window."""
        if self.acked:
            committed = self.commits.is_committed
            self.acked = deque(b for b in self.acked
                               if not all(committed(k, o) for k, o in b.offsets.items()))
        self.metrics.in_flight.set(self.in_flight)

    def wait_for_room(self, records: int, carry: list[Message] | None = None) -> None:
        """Serve acknowledgements and commit confirmations until `records` more fit (see
        `room_for`). A confirmation is served by the consumer, ahead of fetched messages; a
        message that comes with it goes to `carry` (the caller's next batch starts with it:
        nothing is sought back in steady state), or is sought back to without `carry`.
        Rebalance callbacks may run meanwhile: the caller must check for them.
        `CommitsStalled` when only unconfirmed commits are in the way and they stall: the
        caller must not produce, and should take no new batch while `commits_stalled()`."""
        while not self.room_for(records):
            if self.batches:
                self.collect(timeout=0.05)
                continue
            if self.commits.watch():
                raise CommitsStalled(f"{self.in_flight} messages acknowledged, their commit unconfirmed")
            self.commits.commit()
            # Let the commit's round trip pass (serving acknowledgements, nothing else to do),
            # then serve what the consumer has queued: one message at most per millisecond.
            self._sender.producer.poll(0.001)
            self.commits.serve(0, carry, self.max_uncommitted)
            self._release_confirmed()

    def commits_stalled(self) -> bool:
        """Acknowledged output whose commit is failing or overdue (the coordinator is away)."""
        return bool(self.acked) and self.commits.watch()

    def drain(self, timeout: float | None = None) -> None:
        """Wait until nothing is in flight (rebalance, shutdown); commits what was acknowledged."""
        deadline = time.monotonic() + (self.timeout + min(5.0, self.timeout) if timeout is None else timeout)
        while self.batches:
            if time.monotonic() > deadline:
                self._renew("delivery reports overdue", overdue=True)
                self._fail(f"{self.in_flight} records unacknowledged at drain")
            self.collect(timeout=0.05)

    def deliver(self, records: Sequence[OutRecord], offsets: Offsets) -> None:
        """The synchronous path (send, then wait for it): what `AtLeastOnce.deliver` does."""
        self.send(records, offsets, {})
        try:
            self.drain()
        except PipelineFailed as exc:
            raise DeliveryFailed(str(exc)) from exc

    def _acknowledged(self, batch: InFlight) -> None:
        self._overdue_in_a_row = 0
        seconds = time.perf_counter() - batch.sent_at
        self.metrics.delivery_latency.observe(seconds)
        self.metrics.stage_latency.labels("ack").observe(seconds)
        self.commits.broker_answered()
        self.commits.add(batch.offsets)
        self.acked.append(batch)
        if batch.on_acked is not None:
            batch.on_acked(batch)

    def _fail(self, why: str) -> None:
        """Drop every batch in flight (none is committed) and say where to rewind to."""
        rewind: Offsets = {}
        for batch in self.batches:
            for key, offset in batch.first.items():
                rewind[key] = min(offset, rewind.get(key, offset))
        count = len(self.batches)
        self.batches.clear()
        self.metrics.in_flight.set(self.in_flight)
        log.warning("stream.pipeline_failed", reason=why, batches=count)
        raise PipelineFailed(why, rewind)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions lost to another member: neither their acknowledged nor their in-flight
        offsets may be committed by this one."""
        super().forget(partitions)
        for batch in (*self.batches, *self.acked):
            for key in partitions:
                batch.offsets.pop(key, None)
                batch.first.pop(key, None)
        self._release_confirmed()
