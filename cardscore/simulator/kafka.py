"""Replaying landing files to Kafka: the same bytes, keyed by card, optionally paced.

Messages: key = the event's customer_id as a decimal string (one card's events stay in one
partition, in order), value = the landing line exactly (no newline), headers
`content-type: application/json` and `schema: transaction_event.v2`. The producer is
idempotent with acks=all, so librdkafka's retries never duplicate or reorder a card's events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date

from confluent_kafka import KafkaError, KafkaException, Producer

from cardscore.core.config import Settings
from cardscore.schemas.contracts import TRANSACTION_EVENT
from cardscore.schemas.serialization import schema_id
from cardscore.simulator.landing import read_landing_day

TRANSACTION_HEADERS = [
    ("content-type", b"application/json"),
    ("schema", schema_id(TRANSACTION_EVENT).encode()),
]
# Options the replay guarantees whatever the configuration says.
_REQUIRED = {"enable.idempotence": "true", "acks": "all"}
_DEFAULTS = {"linger.ms": "5"}


class DeliveryError(RuntimeError):
    """Some messages were not acknowledged by the broker."""


class TokenBucket:
    """Paces to `rate` events per second: takes tokens freely while the bucket holds some and
    sleeps (once per refill, never per message) when it is empty. `burst` is its capacity;
    the default, 1/20 s of events, keeps the pace smooth without many short sleeps."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = max(1.0, burst if burst is not None else self.rate / 20.0)
        self.tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()

    def take(self) -> None:
        """Take one token, waiting for a refill when the bucket is empty."""
        if self.tokens < 1.0:
            self._refill()
            if self.tokens < 1.0:
                # Wait for a full bucket, not one token: one sleep covers the next `capacity` events.
                self._sleep((self.capacity - self.tokens) / self.rate)
                self._refill()
        self.tokens -= 1.0

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now


def customer_key(line: bytes) -> bytes:
    """The message key of an event line: its customer_id as a decimal string."""
    try:
        customer_id = json.loads(line)["customer_id"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"not a transaction event with a customer_id: {line[:200]!r}") from None
    if isinstance(customer_id, bool) or not isinstance(customer_id, int):
        raise ValueError(f"customer_id must be an integer: {line[:200]!r}")
    return str(customer_id).encode()


def produce_events(
    lines: Iterable[bytes],
    conf: Mapping[str, str],
    topic: str,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    flush_timeout: float = 60.0,
) -> int:
    """Produce event lines to `topic`; returns the number delivered.

    `rate`: events per second (token bucket), None for as fast as possible. `progress(n)`
    is called with the number of newly acknowledged messages. Raises DeliveryError if any
    message failed or was still unacknowledged after `flush_timeout` seconds.
    """
    producer = Producer({**_DEFAULTS, **dict(conf), **_REQUIRED})
    bucket = TokenBucket(rate) if rate else None
    delivered = 0
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(err)
        else:
            delivered += 1

    reported = 0

    def serve(timeout: float) -> None:
        # Delivery callbacks run inside poll(); progress is reported in batches, not per message.
        nonlocal reported
        producer.poll(timeout)
        if progress is not None and delivered > reported:
            progress(delivered - reported)
            reported = delivered

    produced = 0
    for line in lines:
        if failures:
            break  # the idempotent producer is fatal after a failure: stop early
        if bucket is not None:
            bucket.take()
        key = customer_key(line)
        while True:
            try:
                producer.produce(
                    topic, value=line, key=key, headers=TRANSACTION_HEADERS, on_delivery=on_delivery
                )
                break
            except BufferError:
                serve(0.05)  # the local queue is full: serve deliveries, then retry
            except KafkaException as exc:
                raise DeliveryError(f"producing to {topic} failed: {exc}") from exc
        produced += 1
        if bucket is not None or produced % 500 == 0:
            serve(0)  # when paced, messages are sparse: serve deliveries (and progress) each time
    deadline = time.monotonic() + flush_timeout
    while len(producer) and time.monotonic() < deadline:
        serve(0.1)
    remaining = producer.flush(0)
    serve(0)
    if failures:
        raise DeliveryError(
            f"{len(failures)} of {produced} messages to {topic} failed; first error: {failures[0]}"
        )
    if remaining:
        raise DeliveryError(
            f"{remaining} of {produced} messages to {topic} unacknowledged after {flush_timeout}s"
        )
    return delivered


def replay_day(
    settings: Settings,
    day: date,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    ensure_topic: bool = True,
) -> int:
    """Produce one landing day of transactions, in event-time order, to the transactions topic.

    `ensure_topic` creates the topic (kafka.partitions partitions) if it is missing.
    """
    lines = read_landing_day(settings.landing_root, day, "transactions")
    topic = settings.kafka.topics.transactions
    if ensure_topic:
        from cardscore.services.broker import create_topics

        create_topics(
            settings.kafka_conf(),
            {topic: settings.kafka.partitions},
            settings.kafka.replication_factor,
        )
    return produce_events(
        lines, settings.kafka_conf("producer"), topic, rate=rate, progress=progress
    )
