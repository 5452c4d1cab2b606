"""Malformed transaction messages, one or more per reason code the stream can meet.

`outside_day` and `duplicate_conflict` are batch-ingest reasons (a landing file's day, a
second line with the same id): a stream message has no landing day, and a re-sent id is
scored again (idempotent by key), so the stream never produces them.
"""

from __future__ import annotations

import json

from cardscore.schemas.reasons import RejectReason

GOOD = {"transaction_id": 900_001, "event_time": "2018-04-07T10:00:00Z", "customer_id": 3,
        "terminal_id": 4, "amount": 25.5}
MARKER = "SECRET-PAYLOAD-MARKER"  # inside bad payloads: must never reach a log line


def _line(**changes) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def _raw(text: str) -> bytes:
    return text.encode()


BAD: list[tuple[str, bytes | None, RejectReason]] = [
    ("not json", _raw(f"{{not json {MARKER}"), RejectReason.MALFORMED_JSON),
    ("empty value", b"", RejectReason.MALFORMED_JSON),
    ("tombstone", None, RejectReason.MALFORMED_JSON),
    ("array", _raw(f'["{MARKER}", 2]'), RejectReason.NOT_AN_OBJECT),
    ("missing amount", _line(amount=..., note=MARKER), RejectReason.MISSING_FIELD),
    ("null customer", _line(customer_id=None, note=MARKER), RejectReason.NULL_FIELD),
    ("string id", _line(customer_id="12", note=MARKER), RejectReason.WRONG_TYPE),
    ("float id", _line(terminal_id=4.0), RejectReason.WRONG_TYPE),
    ("boolean amount", _line(amount=True), RejectReason.WRONG_TYPE),
    ("NaN amount", _raw('{"transaction_id": 1, "event_time": "2018-04-07T10:00:00Z", "customer_id": 1, '
                        '"terminal_id": 2, "amount": NaN}'), RejectReason.NOT_FINITE),
    ("Infinity amount", _raw('{"transaction_id": 1, "event_time": "2018-04-07T10:00:00Z", "customer_id": 1, '
                             '"terminal_id": 2, "amount": Infinity}'), RejectReason.NOT_FINITE),
    ("negative amount", _line(amount=-5.0), RejectReason.OUT_OF_RANGE),
    ("absurd amount", _line(amount=1e12), RejectReason.OUT_OF_RANGE),
    ("negative id", _line(transaction_id=-1), RejectReason.OUT_OF_RANGE),
    ("offset timestamp", _line(event_time="2018-04-07T10:00:00+02:00"), RejectReason.BAD_TIMESTAMP),
    ("impossible date", _line(event_time="2018-02-30T00:00:00Z"), RejectReason.BAD_TIMESTAMP),
    ("byte-order mark", b"\xef\xbb\xbf" + _line(), RejectReason.ENCODING),
    ("carriage return", _line() + b"\r", RejectReason.ENCODING),
    ("latin-1 bytes", b'{"transaction_id": 7, "note": "caf\xe9"}', RejectReason.ENCODING),
    ("oversized", _line(note=MARKER + "x" * 70_000), RejectReason.OVERSIZED),
]
