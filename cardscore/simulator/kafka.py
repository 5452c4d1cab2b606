"""Replaying landing files to Kafka: the same bytes, keyed by card, optionally paced.

Transactions: key = the event's customer_id as a decimal string (one card's events stay in one
partition, in order), value = the landing line exactly (no newline), headers
`content-type: application/json` and `schema: transaction_event.v2`.

Labels (`replay_day` publishes the day's label reports too): value = the labels landing line
exactly, headers `schema: label_event.v2`, key = the customer_id **of the labelled
transaction** (a label event carries only the transaction id; the replay finds the card in the
transactions landing files of the 30 days up to the day). Same key, same partitioner and the
same partition count as the transactions topic put a label in the partition of its own
transaction (co-partitioned), which is what the card-keyed fresh-features consumer needs
(features/README.md, "The labels topic"). A label whose transaction the replay cannot find
gets no key (null): its transaction is older than every fresh-feature window or unknown, so
it counts for no feature, and it is still published (the topic holds every report of the day).

The day's transactions and reports go out as **one sequence ordered by time**: a transaction
at its event time, a report at its report time; at equal times the transactions first (a
report at t is not seen by a transaction at t, features/README.md). One idempotent producer
(acks=all) sends the sequence in order, so librdkafka's retries never duplicate or reorder it;
a rerun of the replay appends the same sequence again (consumers drop repeated transaction ids
and repeated reports).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from cardscore.core.config import Settings
from cardscore.schemas.contracts import LABEL_EVENT, TRANSACTION_EVENT
from cardscore.schemas.serialization import schema_id
from cardscore.schemas.timestamps import parse_timestamp_us
from cardscore.schemas.validation import Rejection, validate_bytes
from cardscore.simulator.landing import read_landing_day

TRANSACTION_HEADERS = [
    ("content-type", b"application/json"),
    ("schema", schema_id(TRANSACTION_EVENT).encode()),
]
LABEL_HEADERS = [
    ("content-type", b"application/json"),
    ("schema", schema_id(LABEL_EVENT).encode()),
]
# How far back the replay looks for a label's transaction: the longest fresh-feature window
# (30 days, features/fresh.py). A report of an older transaction counts for no feature.
LABEL_KEY_LOOKBACK_DAYS = 30
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


@dataclass(frozen=True)
class OutMessage:
    """One message to produce: its topic, key (None: no key), value and headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]


def produce_events(
    lines: Iterable[bytes],
    conf: Mapping[str, str],
    topic: str,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    flush_timeout: float = 60.0,
) -> int:
    """Produce transaction event lines to `topic`, keyed by card; returns the number delivered.

    `rate`: events per second (token bucket), None for as fast as possible. `progress(n)`
    is called with the number of newly acknowledged messages. Raises DeliveryError if any
    message failed or was still unacknowledged after `flush_timeout` seconds.
    """
    messages = (OutMessage(topic, customer_key(line), line, TRANSACTION_HEADERS) for line in lines)
    return produce_messages(messages, conf, rate=rate, progress=progress, flush_timeout=flush_timeout)


def produce_messages(
    messages: Iterable[OutMessage],
    conf: Mapping[str, str],
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    flush_timeout: float = 60.0,
) -> int:
    """Produce `messages` in their order with one idempotent producer; returns the number
    delivered. Same `rate`, `progress` and DeliveryError as `produce_events`."""
    producer = Producer({**_DEFAULTS, **dict(conf), **_REQUIRED})
    bucket = TokenBucket(rate) if rate else None
    delivered = 0
    failures: list[KafkaError] = []
    topics: set[str] = set()

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
    for message in messages:
        if failures:
            break  # the idempotent producer is fatal after a failure: stop early
        if bucket is not None:
            bucket.take()
        topics.add(message.topic)
        while True:
            try:
                producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=list(message.headers),
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                serve(0.05)  # the local queue is full: serve deliveries, then retry
            except KafkaException as exc:
                raise DeliveryError(f"producing to {message.topic} failed: {exc}") from exc
        produced += 1
        if bucket is not None or produced % 500 == 0:
            serve(0)  # when paced, messages are sparse: serve deliveries (and progress) each time
    deadline = time.monotonic() + flush_timeout
    while len(producer) and time.monotonic() < deadline:
        serve(0.1)
    remaining = producer.flush(0)
    serve(0)
    where = ", ".join(sorted(topics))
    if failures:
        raise DeliveryError(
            f"{len(failures)} of {produced} messages to {where} failed; first error: {failures[0]}"
        )
    if remaining:
        raise DeliveryError(
            f"{remaining} of {produced} messages to {where} unacknowledged after {flush_timeout}s"
        )
    return delivered


@dataclass(frozen=True)
class ReplayReport:
    """What `replay_day` delivered: transactions, label reports, and the reports sent without
    a key because their transaction was not found (see the module docstring)."""

    transactions: int
    labels: int
    unkeyed_labels: int = 0

    @property
    def total(self) -> int:
        return self.transactions + self.labels


def read_label_day(landing_uri: str, day: date) -> list[bytes]:
    """The label report lines that arrived on `day`; none when the day has no labels file
    (a world's first days: no report is due yet)."""
    try:
        return read_landing_day(landing_uri, day, "labels")
    except FileNotFoundError:
        return []


def replay_messages(
    settings: Settings, day: date, labels: bool = True
) -> tuple[list[OutMessage], ReplayReport]:
    """The day's replay sequence (pure: reads the landing files, produces nothing).

    Transactions in event-time order and (with `labels`) the day's label reports at their
    report times, merged; ties: transactions first, then reports, each in file order.
    Raises ValueError, before anything is sent, on a transaction line without an integer
    customer_id or an event_time, or a label line that is not a valid `label_event`: the key
    and the place in the sequence come from them. (Other invalid transaction lines are sent
    as they are, as before: the scorer dead-letters them.)
    """
    landing = settings.landing_root
    tx_lines = read_landing_day(landing, day, "transactions")
    timed: list[tuple[int, int, int, OutMessage]] = []
    tx_topic, label_topic = settings.kafka.topics.transactions, settings.kafka.topics.labels
    for position, line in enumerate(tx_lines):
        timed.append((_event_time_us(line), 0, position,
                      OutMessage(tx_topic, customer_key(line), line, TRANSACTION_HEADERS)))
    label_lines = read_label_day(landing, day) if labels else []
    unkeyed = 0
    if label_lines:
        records = [_label_record(line) for line in label_lines]
        cards = label_cards(landing, day, {r["transaction_id"] for r in records})
        for position, (line, record) in enumerate(zip(label_lines, records, strict=True)):
            card = cards.get(record["transaction_id"])
            unkeyed += card is None
            key = None if card is None else str(card).encode()
            timed.append((record["reported_time"], 1, position,
                          OutMessage(label_topic, key, line, LABEL_HEADERS)))
    timed.sort(key=lambda item: item[:3])
    report = ReplayReport(len(tx_lines), len(label_lines), unkeyed)
    return [item[3] for item in timed], report


def label_cards(landing_uri: str, day: date, transaction_ids: set[int]) -> dict[int, int]:
    """transaction id -> customer_id for the ids found in the transactions landing files of
    `day` and the LABEL_KEY_LOOKBACK_DAYS days before it (newest first, stopping once all
    are found; a missing day is skipped)."""
    found: dict[int, int] = {}
    wanted = set(transaction_ids)
    for back in range(LABEL_KEY_LOOKBACK_DAYS + 1):
        if not wanted:
            break
        try:
            lines = read_landing_day(landing_uri, day - timedelta(days=back), "transactions")
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
                tx_id, card = record["transaction_id"], record["customer_id"]
            except (ValueError, KeyError, TypeError):
                continue  # not a transaction: it keys nothing
            if tx_id in wanted and isinstance(card, int):
                found[tx_id] = card
                wanted.discard(tx_id)
    return found


def _event_time_us(line: bytes) -> int:
    try:
        return parse_timestamp_us(json.loads(line)["event_time"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"not a transaction event with an event_time: {line[:200]!r}") from None


def _label_record(line: bytes) -> dict[str, Any]:
    record = validate_bytes(line, LABEL_EVENT)
    if isinstance(record, Rejection):
        raise ValueError(f"not a valid label event ({record.reason.value}: {record.detail}): "
                         f"{line[:200]!r}")
    return record


def replay_day(
    settings: Settings,
    day: date,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    ensure_topic: bool = True,
    labels: bool = True,
) -> ReplayReport:
    """Produce one landing day, in time order: its transactions to the transactions topic and
    (with `labels`) the label reports that arrived that day to the labels topic, interleaved
    by their times (`replay_messages`). `rate` paces both (events per second).

    `ensure_topic` creates the topics (kafka.partitions partitions) if they are missing.
    """
    messages, report = replay_messages(settings, day, labels=labels)
    topics = settings.kafka.topics
    if ensure_topic:
        from cardscore.services.broker import create_topics

        wanted = [topics.transactions] + ([topics.labels] if labels else [])
        create_topics(
            settings.kafka_conf(),
            {topic: settings.kafka.partitions for topic in wanted},
            settings.kafka.replication_factor,
        )
    # Every message is delivered or produce_messages raises DeliveryError.
    produce_messages(messages, settings.kafka_conf("producer"), rate=rate, progress=progress)
    return report
