"""Dead-letter records: the original message, byte for byte, with headers saying why.

A DLQ record has the rejected message's key and value unchanged, its original headers first
(in their order), then these headers:

| header | value |
| --- | --- |
| `dlq.reason` | reason code (`schemas.reasons.RejectReason`, e.g. `malformed_json`) |
| `dlq.detail` | human-readable explanation (cut to `streaming.dlq_detail_max_chars`) |
| `dlq.contract` | the contract it failed, e.g. `transaction_event.v1` |
| `dlq.source.topic` / `.partition` / `.offset` | where the original message is |
| `dlq.source.timestamp` | the original message timestamp (ms since the epoch) |
| `dlq.scorer` | the consumer group and instance that rejected it |
| `dlq.at` | when it was rejected (RFC 3339 UTC) |

`original_message` strips the `dlq.*` headers again: replaying a DLQ record after a fix
produces exactly the message the upstream sent (`cardscore dlq replay`).
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
    ]
    return DlqRecord(message.key(), message.value(), headers)


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
