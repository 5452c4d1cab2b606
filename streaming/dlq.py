"""Dead-letter records: the original message, byte for byte, with headers saying why.

A DLQ record has the rejected message's key and value unchanged, its original headers first
(in their order), then these headers:

| header | value |
| --- | --- |
| `dlq.reason` | reason code (`schemas.reasons.RejectReason`, e.g. `malformed_json`) |
| `dlq.detail` | human-readable explanation (cut to `streaming.dlq_detail_max_chars`) |
| `dlq.contract` | the contract it failed, e.g. `transaction_event.v2` |
| `dlq.source.topic` / `.partition` / `.offset` | where the original message is |
| `dlq.source.timestamp` | the original message timestamp (ms since the epoch) |
| `dlq.scorer` | the consumer group and instance that rejected it |
| `dlq.at` | when it was rejected (RFC 3339 UTC) |

`original_headers` strips the `dlq.*` headers again: replaying a DLQ record after a fix
produces exactly the message the upstream sent (`cardscore dlq replay`).

A record that would not fit the DLQ topic (the producer's or the topic's `message.max.bytes`)
is cut to fit by `fit_dlq_record`: the value is truncated (then the original headers, then the
key dropped, if they alone are too large), and `dlq.truncated` says what was cut
(`value`, `value,headers`, `value,headers,key`) and `dlq.original.bytes` the original value's
size. The `dlq.source.*` headers still point at the full original in its topic. Replay skips
such records (it cannot restore the original from a cut copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cardscore.schemas.contracts import TRANSACTION_EVENT
from cardscore.schemas.serialization import schema_id
from cardscore.schemas.timestamps import format_timestamp_us
from cardscore.streaming.messages import KafkaMessage, Rejected

PREFIX = "dlq."
REASON = "dlq.reason"
DETAIL = "dlq.detail"
CONTRACT = "dlq.contract"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
SOURCE_TIMESTAMP = "dlq.source.timestamp"
SCORER = "dlq.scorer"
AT = "dlq.at"
TRUNCATED = "dlq.truncated"
ORIGINAL_BYTES = "dlq.original.bytes"
DUPLICATE_FIRST = "dlq.duplicate.first"
# What a record costs beyond its key, value and header bytes (librdkafka's and the broker's
# per-record framing is well under this).
RECORD_OVERHEAD_BYTES = 512

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class DlqRecord:
    key: bytes | None
    value: bytes | None
    headers: Headers


def dlq_record(rejected: Rejected, scorer: str, at_us: int, detail_max_chars: int = 512) -> DlqRecord:
    """The DLQ record of a rejected message (original key, value and headers kept)."""
    message = rejected.message
    kind, stamp = message.timestamp()
    detail = rejected.detail
    if len(detail) > detail_max_chars:
        detail = detail[: detail_max_chars - 3] + "..."
    headers: Headers = [(name, value or b"") for name, value in (message.headers() or [])]
    headers += [
        (REASON, rejected.reason.value.encode()),
        (DETAIL, detail.encode("utf-8", "replace")),
        (CONTRACT, schema_id(TRANSACTION_EVENT).encode()),
        (SOURCE_TOPIC, (message.topic() or "").encode()),
        (SOURCE_PARTITION, str(message.partition()).encode()),
        (SOURCE_OFFSET, str(message.offset()).encode()),
        (SOURCE_TIMESTAMP, str(stamp if kind else -1).encode()),
        (SCORER, scorer.encode()),
        (AT, format_timestamp_us(at_us).encode()),
        *rejected.headers,
    ]
    return DlqRecord(message.key(), message.value(), headers)


def record_bytes(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """Bytes of a record as the size limits count them (key, value, header names and values)."""
    return len(key or b"") + len(value or b"") + sum(len(k.encode()) + len(v or b"") for k, v in headers)


def fit_dlq_record(record: DlqRecord, max_bytes: int) -> DlqRecord:
    """`record` if it fits in `max_bytes` (framing included), else a cut copy that does and
    says so in its headers (see the module docstring)."""
    budget = max_bytes - RECORD_OVERHEAD_BYTES
    if record_bytes(record.key, record.value, record.headers) <= budget:
        return record
    original = [(k, v) for k, v in record.headers if not k.startswith(PREFIX)]
    ours = [(k, v) for k, v in record.headers if k.startswith(PREFIX)]
    value = record.value or b""
    for cut, key, headers in (
        ("value", record.key, original),
        ("value,headers", record.key, []),
        ("value,headers,key", None, []),
    ):
        kept = [*headers, *ours, (TRUNCATED, cut.encode()), (ORIGINAL_BYTES, str(len(value)).encode())]
        room = budget - record_bytes(key, b"", kept)
        if room >= 0:
            return DlqRecord(key, value[:room], kept)
    # Even our own headers do not fit (a tiny limit): keep the reason and the source only.
    essential = {REASON, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET}
    kept = [(k, v) for k, v in ours if k in essential] + [(TRUNCATED, b"value,headers,key")]
    return DlqRecord(None, b"", kept)


def dlq_reference(record: DlqRecord) -> DlqRecord:
    """The smallest useful DLQ record: no key, value or original headers, only ours (the
    reason and where the original is) and what was cut. Sent when even a cut copy is refused."""
    ours = [(k, v) for k, v in record.headers if k.startswith(PREFIX)]
    return DlqRecord(None, b"", [*ours, (TRUNCATED, b"value,headers,key"),
                                 (ORIGINAL_BYTES, str(len(record.value or b"")).encode())])


def is_truncated(headers: Sequence[tuple[str, bytes | None]] | None) -> bool:
    return header(headers, TRUNCATED) is not None


def header(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The last value of header `name` as text, or None."""
    found = None
    for key, value in headers or []:
        if key == name:
            found = (value or b"").decode("utf-8", "replace")
    return found


def original_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> Headers:
    """The headers of the message as the upstream sent it (every `dlq.*` header removed)."""
    return [(k, v or b"") for k, v in headers or [] if not k.startswith(PREFIX)]


def describe(message: KafkaMessage) -> dict[str, str | None]:
    """The DLQ metadata of a DLQ message, for listings (never its payload)."""
    headers = message.headers()
    return {
        "reason": header(headers, REASON),
        "detail": header(headers, DETAIL),
        "source": f"{header(headers, SOURCE_TOPIC)}[{header(headers, SOURCE_PARTITION)}]"
        f"@{header(headers, SOURCE_OFFSET)}",
        "at": header(headers, AT),
    }
