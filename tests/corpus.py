"""Hostile records, one corpus for both paths: landing lines for ingest, message values for the
stream scorer. Both paths must reject the same records for the same reasons
(`tests/streaming/test_ingest_parity.py` runs every entry through both, for real).

* `TRANSACTION_LINES` / `LABEL_LINES`: (name, raw bytes, expected reason or None). The reason
  is what `schemas.validation.validate_bytes` says, which both paths use; valid transactions
  each have their own id, so nothing here is a duplicate by accident.
* `DUPLICATES`: lines sharing a transaction id, in order, with what each path does with them
  (the duplicate policy: streaming/README.md, "Duplicate transaction ids").
* `STREAM_BAD`: every rejected transaction line plus the Kafka-only tombstone, with the reason
  as a `RejectReason`.

All valid transactions are on `DAY` (the ingest landing day of the parity test); the two valid
lines at the edges of the contract's event-time range are the exception, on purpose.
"""

from __future__ import annotations

import json
import random
from datetime import date
from typing import Any, NamedTuple

from cardscore.schemas.reasons import RejectReason

DAY = date(2018, 4, 1)
MARKER = "SECRET-PAYLOAD-MARKER"  # inside some bad payloads: must never reach a log line

GOOD_TX: dict[str, Any] = {
    "transaction_id": 1,
    "event_time": "2018-04-01T00:07:56Z",
    "customer_id": 2,
    "terminal_id": 3,
    "amount": 57.5,
}
GOOD_LABEL: dict[str, Any] = {
    "transaction_id": 1,
    "is_fraud": True,
    "reported_time": "2018-04-01T10:00:00Z",
    "fraud_scenario": 1,
}
# A valid transaction of another day (the stream tests' world is 2018-04-07).
GOOD = {"transaction_id": 900_001, "event_time": "2018-04-07T10:00:00Z", "customer_id": 3,
        "terminal_id": 4, "amount": 25.5}


class Entry(NamedTuple):
    name: str
    raw: bytes
    reason: str | None


def line(record: dict[str, Any], **changes: Any) -> bytes:
    """A compact JSON line; `changes` replace fields, a value of `...` removes the field."""
    out = {**record}
    for name, value in changes.items():
        if value is ...:
            out.pop(name, None)
        else:
            out[name] = value
    return json.dumps(out, separators=(",", ":")).encode()


def _tx(**changes: Any) -> bytes:
    return line(GOOD_TX, **changes)


def _raw_tx(old: bytes, new: bytes, **changes: Any) -> bytes:
    raw = _tx(**changes)
    assert old in raw, (old, raw)
    return raw.replace(old, new, 1)


def _number(name: str, token: str, **changes: Any) -> bytes:
    """A transaction whose field `name` is the raw JSON token `token` (any number of digits)."""
    return _raw_tx(f'"{name}":{json.dumps(GOOD_TX[name])}'.encode(), f'"{name}":{token}'.encode(), **changes)


_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

TRANSACTION_LINES: list[Entry] = [
    Entry("valid", _tx(transaction_id=101), None),
    Entry("valid integer amount", _tx(transaction_id=102, amount=57), None),
    Entry("valid with spaces", json.dumps({**GOOD_TX, "transaction_id": 103}).encode(), None),
    Entry("valid padded", b" \t" + _tx(transaction_id=104) + b" ", None),
    Entry("valid fraction", _tx(transaction_id=105, event_time="2018-04-01T00:07:56.123456Z"), None),
    Entry("valid max id", _tx(transaction_id=2**63 - 1), None),
    Entry("valid unknown fields", _raw_tx(b"{", b'{"channel":"web","tags":[1,{"a":null}],', transaction_id=106), None),
    Entry("valid non-ascii unknown", _raw_tx(b"{", '{"note":"café ☕",'.encode(), transaction_id=107), None),
    Entry("valid escaped key", _raw_tx(b'"amount"', b'"\\u0061mount"', transaction_id=108), None),
    Entry("valid repeated member, last wins", _raw_tx(b"{", b'{"amount":-1,', transaction_id=109), None),
    Entry("valid amount zero", _tx(transaction_id=110, amount=0.0), None),
    Entry("valid amount max", _tx(transaction_id=111, amount=100000.0), None),
    Entry("valid huge unknown integer", _raw_tx(b"{", b'{"trace":' + b"7" * 5000 + b",", transaction_id=112), None),
    Entry("valid first instant of the range", _tx(transaction_id=113, event_time="1970-01-01T00:00:00Z"), None),
    Entry("valid last instant of the range", _tx(transaction_id=114, event_time="2199-12-31T23:59:59.999999Z"), None),
    Entry("empty line", b"", "malformed_json"),
    Entry("not json", b"hello", "malformed_json"),
    Entry("not json with marker", f"{{not json {MARKER}".encode(), "malformed_json"),
    Entry("truncated", _tx()[:-9], "malformed_json"),
    Entry("trailing comma", _raw_tx(b"}", b",}"), "malformed_json"),
    Entry("single quotes", _tx().replace(b'"', b"'"), "malformed_json"),
    Entry("trailing garbage", _tx() + b"x", "malformed_json"),
    Entry("two objects", _tx() + _tx(), "malformed_json"),
    Entry("leading zero", _raw_tx(b'"customer_id":2', b'"customer_id":02'), "malformed_json"),
    Entry("control char in string", _raw_tx(b"2018-04-01T", b"2018-04-01\x01T"), "malformed_json"),
    Entry("array", b"[1,2,3]", "not_an_object"),
    Entry("array with marker", f'["{MARKER}", 2]'.encode(), "not_an_object"),
    Entry("string", b'"text"', "not_an_object"),
    Entry("json null", b"null", "not_an_object"),
    Entry("number", b"42", "not_an_object"),
    Entry("empty object", b"{}", "missing_field"),
    Entry("missing id", _tx(transaction_id=...), "missing_field"),
    Entry("missing amount", _tx(amount=..., note=MARKER), "missing_field"),
    Entry("null id", _tx(transaction_id=None), "null_field"),
    Entry("null time", _tx(event_time=None), "null_field"),
    Entry("null customer", _tx(customer_id=None, note=MARKER), "null_field"),
    Entry("string id", _tx(transaction_id="1", note=MARKER), "wrong_type"),
    Entry("float id", _tx(transaction_id=1.0), "wrong_type"),
    Entry("exponent id", _number("transaction_id", "1e2"), "wrong_type"),
    Entry("boolean terminal", _tx(terminal_id=True), "wrong_type"),
    Entry("string amount", _tx(amount="57.5"), "wrong_type"),
    Entry("boolean amount", _tx(amount=False), "wrong_type"),
    Entry("array amount", _tx(amount=[1]), "wrong_type"),
    Entry("object amount", _tx(amount={"value": 1}), "wrong_type"),
    Entry("numeric time", _tx(event_time=1522541276), "wrong_type"),
    Entry("nan amount", _number("amount", "NaN"), "not_finite"),
    Entry("infinite amount", _number("amount", "Infinity"), "not_finite"),
    Entry("negative infinite amount", _number("amount", "-Infinity"), "not_finite"),
    Entry("overflowing amount", _number("amount", "1e400"), "not_finite"),
    Entry("amount of 400 digits", _number("amount", "9" * 400), "not_finite"),
    Entry("amount of 5000 digits", _number("amount", "9" * 5000), "not_finite"),
    Entry("nan id", _number("transaction_id", "NaN"), "not_finite"),
    Entry("time with space", _tx(event_time="2018-04-01 00:07:56"), "bad_timestamp"),
    Entry("time with offset", _tx(event_time="2018-04-01T00:07:56+00:00"), "bad_timestamp"),
    Entry("time lower z", _tx(event_time="2018-04-01T00:07:56z"), "bad_timestamp"),
    Entry("time 7 fraction digits", _tx(event_time="2018-04-01T00:07:56.1234567Z"), "bad_timestamp"),
    Entry("time empty fraction", _tx(event_time="2018-04-01T00:07:56.Z"), "bad_timestamp"),
    Entry("time one-digit month", _tx(event_time="2018-4-01T00:07:56Z"), "bad_timestamp"),
    Entry("february 30", _tx(event_time="2018-02-30T00:00:00Z"), "bad_timestamp"),
    Entry("month 13", _tx(event_time="2018-13-01T00:00:00Z"), "bad_timestamp"),
    Entry("day 0", _tx(event_time="2018-04-00T00:00:00Z"), "bad_timestamp"),
    Entry("hour 24", _tx(event_time="2018-04-01T24:00:00Z"), "bad_timestamp"),
    Entry("leap second", _tx(event_time="2018-04-01T23:59:60Z"), "bad_timestamp"),
    Entry("year 0", _tx(event_time="0000-04-01T00:00:00Z"), "bad_timestamp"),
    Entry("arabic-indic digits in the year",
          _tx(event_time="2018".translate(_ARABIC_INDIC) + "-04-01T00:07:56Z"), "bad_timestamp"),
    Entry("fullwidth digits in the hour",
          _tx(event_time="2018-04-01T" + "00".translate(_FULLWIDTH) + ":07:56Z"), "bad_timestamp"),
    Entry("non-ascii digit in the fraction",
          _tx(event_time="2018-04-01T00:07:56." + "5".translate(_ARABIC_INDIC) + "Z"), "bad_timestamp"),
    Entry("escaped non-ascii digits",
          _raw_tx(b'"2018-04-01T', b'"\\u0662\\u0660\\u0661\\u0668-04-01T'), "bad_timestamp"),
    Entry("time in year 1", _tx(event_time="0001-01-01T00:00:00Z"), "out_of_range"),
    Entry("time just before 1970 with a fraction", _tx(event_time="1969-12-31T23:59:59.5Z"), "out_of_range"),
    Entry("time just after the range", _tx(event_time="2200-01-01T00:00:00Z"), "out_of_range"),
    Entry("time past pandas' nanoseconds", _tx(event_time="2262-04-12T00:00:00Z"), "out_of_range"),
    Entry("time in 9999", _tx(event_time="9999-12-31T23:59:59.999999Z"), "out_of_range"),
    Entry("negative amount", _tx(amount=-0.01), "out_of_range"),
    Entry("absurd amount", _tx(amount=1e9), "out_of_range"),
    Entry("just above max amount", _tx(amount=100000.00001), "out_of_range"),
    Entry("amount of 200 digits", _number("amount", "9" * 200), "out_of_range"),
    Entry("negative id", _tx(transaction_id=-5), "out_of_range"),
    Entry("id above 2^63-1", _tx(transaction_id=2**63), "out_of_range"),
    Entry("id of 45 digits", _tx(transaction_id=10**44), "out_of_range"),
    Entry("negative huge customer", _tx(customer_id=-(10**44)), "out_of_range"),
    Entry("customer of 5000 digits", _number("customer_id", "9" * 5000), "out_of_range"),
    Entry("negative terminal of 5000 digits", _number("terminal_id", "-" + "9" * 5000), "out_of_range"),
    Entry("byte-order mark", b"\xef\xbb\xbf" + _tx(), "encoding"),
    Entry("carriage return", _tx() + b"\r", "encoding"),
    Entry("invalid utf-8", _raw_tx(b"57.5", b"5\xff7"), "encoding"),
    Entry("invalid utf-8 and bom", b"\xef\xbb\xbf\xff" + _tx(), "encoding"),
    Entry("latin-1 bytes", b'{"transaction_id": 7, "note": "caf\xe9"}', "encoding"),
    Entry("oversized", _raw_tx(b"{", b'{"pad":"' + MARKER.encode() + b"x" * 70_000 + b'",'), "oversized"),
    Entry("first failing field wins", _tx(transaction_id="x", amount=-1), "wrong_type"),
    Entry("missing before wrong type", _tx(transaction_id=..., amount="x"), "missing_field"),
]


class Duplicate(NamedTuple):
    """A line of a group sharing a transaction id, and what each path does with it."""

    name: str
    raw: bytes
    ingest: str  # "accepted", "duplicate" (identical copy, dropped) or the quarantine reason
    stream: str  # "scored" or the DLQ reason


# In this order. Ingest sees the whole day: every copy of a conflicting id is rejected (which one
# is right cannot be known). The stream scores the first when it arrives and rejects a later
# copy with other content; an identical copy is dropped by ingest and scored again (same key,
# same score) by the stream. Content means the typed contract fields, so spelling (spaces,
# member order, 5.0 vs 5) does not matter.
DUPLICATES: list[Duplicate] = [
    Duplicate("conflict, first copy", _tx(transaction_id=201, amount=5.0), "duplicate_conflict", "scored"),
    Duplicate("conflict, later copy with another amount", _tx(transaction_id=201, amount=6.0),
              "duplicate_conflict", "duplicate_conflict"),
    Duplicate("conflict by a microsecond, first copy", _tx(transaction_id=202, event_time="2018-04-01T08:00:00Z"),
              "duplicate_conflict", "scored"),
    Duplicate("conflict by a microsecond, later copy",
              _tx(transaction_id=202, event_time="2018-04-01T08:00:00.000001Z"), "duplicate_conflict",
              "duplicate_conflict"),
    Duplicate("repeat, first copy", _tx(transaction_id=203, amount=5.0), "accepted", "scored"),
    Duplicate("repeat, identical copy", _tx(transaction_id=203, amount=5.0), "duplicate", "scored"),
    Duplicate("repeat, other spelling", json.dumps({"amount": 5, **{k: v for k, v in GOOD_TX.items() if k != "amount"},
                                                    "transaction_id": 203}).encode(), "duplicate", "scored"),
]


def _label(**changes: Any) -> bytes:
    return line(GOOD_LABEL, **changes)


LABEL_LINES: list[Entry] = [
    Entry("valid", _label(), None),
    Entry("valid not fraud, no scenario", _label(is_fraud=False, fraud_scenario=None), None),
    Entry("valid scenario absent", _label(fraud_scenario=...), None),
    Entry("missing is_fraud", _label(is_fraud=...), "missing_field"),
    Entry("null is_fraud", _label(is_fraud=None), "null_field"),
    Entry("numeric is_fraud", _label(is_fraud=1), "wrong_type"),
    Entry("string is_fraud", _label(is_fraud="true"), "wrong_type"),
    Entry("float scenario", _label(fraud_scenario=1.0), "wrong_type"),
    Entry("scenario out of range", _label(fraud_scenario=100), "out_of_range"),
    Entry("scenario above int", _label(fraud_scenario=2**40), "out_of_range"),
    Entry("scenario of 5000 digits", _label().replace(b'"fraud_scenario":1', b'"fraud_scenario":' + b"9" * 5000),
          "out_of_range"),
    Entry("nan is_fraud", _label().replace(b"true", b"NaN"), "wrong_type"),
    Entry("bad reported time", _label(reported_time="yesterday"), "bad_timestamp"),
    # label_event v2: reported_time in the range of event times, bounds included
    Entry("valid report at the first instant of the range", _label(reported_time="1970-01-01T00:00:00Z"), None),
    Entry("valid report at the last instant of the range", _label(reported_time="2199-12-31T23:59:59.999999Z"),
          None),
    Entry("report in year 1", _label(reported_time="0001-01-01T00:00:00Z"), "out_of_range"),
    Entry("report just before 1970", _label(reported_time="1969-12-31T23:59:59.999999Z"), "out_of_range"),
    Entry("report just after the range", _label(reported_time="2200-01-01T00:00:00Z"), "out_of_range"),
    Entry("report in 9999", _label(reported_time="9999-12-31T23:59:59.999999Z"), "out_of_range"),
]

# The stream's view: every rejected transaction line, and a Kafka tombstone (no value).
STREAM_BAD: list[tuple[str, bytes | None, RejectReason]] = [
    (name, raw, RejectReason(reason)) for name, raw, reason in TRANSACTION_LINES if reason is not None
] + [("tombstone", None, RejectReason.MALFORMED_JSON)]


def fuzz_lines(seed: int, count: int) -> list[bytes]:
    """Deterministic random edits of valid lines: the parity test's unexpected inputs."""
    rng = random.Random(seed)
    alphabet = [*b'{}[]":,.-+eE0123456789 tnrufalsNIy\\\t', 0xC3, 0xA9, 0xFF, 0x0D]
    bases = [_tx(), _label(), _tx(amount=12), _tx(event_time="2018-04-01T23:59:59.5Z")]
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(data) + 1)
            action = rng.random()
            if action < 0.4 and data:
                del data[min(position, len(data) - 1)]
            elif action < 0.8:
                data.insert(position, rng.choice(alphabet))
            elif data:
                data[min(position, len(data) - 1)] = rng.choice(alphabet)
        out.append(bytes(data))
    return out
