"""Inbound messages -> a columnar batch of valid transactions and a list of rejections.

Pure functions over confluent-kafka `Message` objects (or anything with the same accessor
methods). Every message is checked with the shared validator, `schemas.validation.validate_bytes`,
against `TRANSACTION_EVENT`: the stream and the batch ingest accept and reject exactly the same
records, with the same reason codes. Label reports from the labels topic are checked the same
way against `LABEL_EVENT` (`split_label_messages`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from cardscore.schemas.contracts import LABEL_EVENT, TRANSACTION_EVENT
from cardscore.schemas.reasons import RejectReason
from cardscore.schemas.validation import Rejection, validate_bytes


class KafkaMessage(Protocol):
    """The accessors of `confluent_kafka.Message` that the scorer uses."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Rejected:
    """An invalid message and why; it goes to the DLQ with its original bytes."""

    message: KafkaMessage
    reason: RejectReason
    detail: str
    headers: tuple[tuple[str, bytes], ...] = ()  # extra `dlq.*` headers for this reason


@dataclass
class TransactionBatch:
    """The valid transactions of a micro-batch as columns (one row per message, input order)."""

    transaction_id: np.ndarray  # int64
    customer_id: np.ndarray  # int64
    terminal_id: np.ndarray  # int64
    amount: np.ndarray  # float64
    event_time_us: np.ndarray  # int64, UTC epoch microseconds
    kafka_timestamp_ms: np.ndarray  # int64, the message's own timestamp (-1 if none)
    records: list[dict[str, Any]] = field(default_factory=list)  # the validated records
    key_mismatches: int = 0  # messages whose key is not their customer_id (scored anyway)
    messages: list[KafkaMessage] = field(default_factory=list)  # row i came from messages[i]

    def __len__(self) -> int:
        return len(self.transaction_id)

    def take(self, rows: np.ndarray) -> TransactionBatch:
        """The batch of the given rows (indices, in that order)."""
        picked = [int(i) for i in rows]
        return TransactionBatch(
            transaction_id=self.transaction_id[rows],
            customer_id=self.customer_id[rows],
            terminal_id=self.terminal_id[rows],
            amount=self.amount[rows],
            event_time_us=self.event_time_us[rows],
            kafka_timestamp_ms=self.kafka_timestamp_ms[rows],
            records=[self.records[i] for i in picked],
            key_mismatches=sum(_key_mismatch(self.messages[i], self.records[i]) for i in picked),
            messages=[self.messages[i] for i in picked],
        )


@dataclass
class SplitBatch:
    valid: TransactionBatch
    rejected: list[Rejected] = field(default_factory=list)

    def reason_counts(self) -> dict[str, int]:
        return dict(Counter(r.reason.value for r in self.rejected))


def split_messages(messages: Sequence[KafkaMessage], max_bytes: int) -> SplitBatch:
    """Validate each message; valid ones become columns, invalid ones `Rejected` records."""
    rows: list[dict[str, Any]] = []
    stamps: list[int] = []
    rejected: list[Rejected] = []
    kept: list[KafkaMessage] = []
    mismatches = 0
    for message in messages:
        raw = message.value()
        # A tombstone (null value) is not a transaction; validating b"" names it malformed JSON.
        result = validate_bytes(raw if raw is not None else b"", TRANSACTION_EVENT, max_bytes)
        if isinstance(result, Rejection):
            rejected.append(Rejected(message, result.reason, result.detail))
            continue
        rows.append(result)
        kept.append(message)
        kind, stamp = message.timestamp()
        stamps.append(stamp if kind else -1)
        # The key only routes a card's events to one partition; the record is valid and is
        # scored, but a producer keying wrongly loses per-card ordering: count it.
        mismatches += _key_mismatch(message, result)
    return SplitBatch(valid=_columns(rows, stamps, mismatches, kept), rejected=rejected)


@dataclass
class LabelBatch:
    """The valid label reports of a batch of labels-topic messages, and the rejected ones."""

    records: list[dict[str, Any]] = field(default_factory=list)  # reported_time: epoch micros
    messages: list[KafkaMessage] = field(default_factory=list)  # records[i] came from messages[i]
    rejected: list[Rejected] = field(default_factory=list)


def split_label_messages(messages: Sequence[KafkaMessage], max_bytes: int) -> LabelBatch:
    """Validate each labels-topic message against `LABEL_EVENT` with the shared validator (the
    batch ingest of the labels landing files accepts and rejects the same records)."""
    batch = LabelBatch()
    for message in messages:
        raw = message.value()
        result = validate_bytes(raw if raw is not None else b"", LABEL_EVENT, max_bytes)
        if isinstance(result, Rejection):
            batch.rejected.append(Rejected(message, result.reason, result.detail))
        else:
            batch.records.append(result)
            batch.messages.append(message)
    return batch


def batch_of(records: Sequence[dict[str, Any]]) -> TransactionBatch:
    """The columns of validated records that came from no message (a probe, a test)."""
    return _columns(list(records), [-1] * len(records), 0, [])


def _key_mismatch(message: KafkaMessage, record: dict[str, Any]) -> bool:
    return message.key() != str(record["customer_id"]).encode()


def _columns(rows: list[dict[str, Any]], stamps: list[int], mismatches: int,
             messages: list[KafkaMessage]) -> TransactionBatch:
    def ints(name: str) -> np.ndarray:
        return np.fromiter((r[name] for r in rows), dtype=np.int64, count=len(rows))

    return TransactionBatch(
        transaction_id=ints("transaction_id"),
        customer_id=ints("customer_id"),
        terminal_id=ints("terminal_id"),
        amount=np.fromiter((r["amount"] for r in rows), dtype=np.float64, count=len(rows)),
        event_time_us=ints("event_time"),
        kafka_timestamp_ms=np.asarray(stamps, dtype=np.int64),
        records=rows,
        key_mismatches=mismatches,
        messages=messages,
    )


def next_offsets(messages: Sequence[KafkaMessage]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset to commit after processing `messages`: last + 1."""
    out: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic() or "", message.partition() or 0)
        offset = (message.offset() or 0) + 1
        if offset > out.get(key, -1):
            out[key] = offset
    return out


def first_offsets(messages: Sequence[KafkaMessage]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the lowest offset in `messages` (where a rewind seeks to)."""
    out: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        if key not in out or offset < out[key]:
            out[key] = offset
    return out
