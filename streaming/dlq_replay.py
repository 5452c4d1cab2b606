"""Reading the DLQ back: a summary for people, and replay of records after a fix.

Replay produces each selected DLQ record's original key, value and headers (the `dlq.*`
headers removed) to its source topic, so the scorer validates it again: a record the fix made
valid is scored, one still invalid goes back to the DLQ. Progress is kept by a consumer group
(default `cardscore-dlq-replay`): a rerun continues where the last one stopped, so each DLQ
record is replayed once per group. Records not selected (`reasons`) are passed over for that
group; replay them later with another group. Each replay adds one to the message's
`cardscore-dlq-replays` header, and records replayed `max_replays` times are skipped, so a
record that keeps failing cannot cycle forever. A record cut to fit the DLQ (`dlq.truncated`)
is not replayed: its copy is incomplete; the original is where `dlq.source.*` says.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from cardscore.core.logs import get_logger
from cardscore.streaming import dlq

if TYPE_CHECKING:
    from cardscore.core.config import Settings

log = get_logger("streaming.dlq_replay")
REPLAYS_HEADER = "cardscore-dlq-replays"
DEFAULT_GROUP = "cardscore-dlq-replay"


@dataclass
class DlqSummary:
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    latest: list[dict[str, str | None]] = field(default_factory=list)


@dataclass
class ReplayReport:
    replayed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # not selected, or replayed too often
    truncated: Counter[str] = field(default_factory=Counter)  # cut copies: not replayable
    dry_run: bool = False


def _partitions(consumer: Consumer, topic: str, timeout: float = 10.0) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise ValueError(f"topic {topic!r} does not exist")
    return sorted(found.partitions)


def read_to_end(consumer: Consumer, partitions: int, timeout: float) -> Iterable[Message]:
    """Messages from the consumer's positions until every partition reports its end."""
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(at_end) < partitions:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the DLQ was not read to its end within {timeout:.0f}s")
        for message in consumer.consume(500, 0.5):
            err = message.error()
            if err is None:
                at_end.discard(message.partition())
                yield message
            elif err.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
            else:
                raise RuntimeError(f"reading the DLQ failed: {err.str()}")


def summarize(settings: Settings, latest: int = 10, timeout: float = 60.0) -> DlqSummary:
    """Counts by reason and the metadata (never the payload) of the newest records."""
    topic = settings.kafka.topics.dlq
    consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": f"{DEFAULT_GROUP}-peek",
                         "enable.partition.eof": "true", "enable.auto.commit": "false"})
    summary = DlqSummary()
    try:
        parts = _partitions(consumer, topic)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        for message in read_to_end(consumer, len(parts), timeout):
            meta = dlq.describe(message)
            summary.total += 1
            summary.by_reason[meta["reason"] or "unknown"] += 1
            summary.latest.append({**meta, "bytes": str(len(message.value() or b""))})
            summary.latest = summary.latest[-latest:] if latest else []
    finally:
        consumer.close()
    return summary


def replay(
    settings: Settings,
    reasons: set[str] | None = None,
    group: str = DEFAULT_GROUP,
    max_replays: int = 3,
    dry_run: bool = False,
    timeout: float = 120.0,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Replay the DLQ's records (those with `reasons`, or all) to their source topics."""
    topic = settings.kafka.topics.dlq
    consumer = Consumer({
        **settings.kafka_conf("consumer"), "group.id": group, "enable.partition.eof": "true",
        "enable.auto.commit": "false", "auto.offset.reset": "earliest",
    })
    producer = Producer({**settings.kafka_conf("producer"), "enable.idempotence": "true", "acks": "all"})
    report = ReplayReport(dry_run=dry_run)
    failures: list[KafkaError] = []
    try:
        parts = _partitions(consumer, topic)
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        consumer.assign([TopicPartition(topic, tp.partition, max(tp.offset, 0)) for tp in committed])
        next_offsets: dict[int, int] = {}
        for message in read_to_end(consumer, len(parts), timeout):
            headers = message.headers() or []
            reason = dlq.header(headers, dlq.REASON) or "unknown"
            replays = int(dlq.header(headers, REPLAYS_HEADER) or 0)
            next_offsets[message.partition()] = message.offset() + 1
            if (reasons and reason not in reasons) or replays >= max_replays:
                report.skipped[reason] += 1
                continue
            if dlq.is_truncated(headers):
                report.truncated[reason] += 1
                log.warning("dlq.replay_skipped_truncated", reason=reason, source=dlq.describe(message)["source"])
                continue
            report.replayed[reason] += 1
            if dry_run:
                continue
            original = [(k, v) for k, v in dlq.original_headers(headers) if k != REPLAYS_HEADER]
            original.append((REPLAYS_HEADER, str(replays + 1).encode()))
            target = dlq.header(headers, dlq.SOURCE_TOPIC) or settings.kafka.topics.transactions
            producer.produce(target, key=message.key(), value=message.value(), headers=original,
                             on_delivery=lambda err, _m: err is not None and failures.append(err))
            producer.poll(0)
            if progress is not None:
                progress(1)
        if dry_run or not next_offsets:
            return report
        if producer.flush(timeout) or failures:
            raise RuntimeError(
                f"{len(failures) or len(producer)} replayed records were not acknowledged; "
                "nothing was committed, so a rerun replays them again"
            )
        # Only after every replayed record was acknowledged: a rerun starts after them.
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in next_offsets.items()],
                        asynchronous=False)
        log.info("dlq.replayed", replayed=dict(report.replayed), skipped=dict(report.skipped),
                 truncated=dict(report.truncated), group=group)
        return report
    finally:
        consumer.close()
