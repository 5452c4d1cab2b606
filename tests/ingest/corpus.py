"""Landing lines for the ingest tests: valid ones and one of every kind of bad record.

Each entry is (name, raw bytes, expected reason or None). The expected reasons are what
`schemas.validation.validate_bytes` says (the parity tests assert that too), so a change in
the Python validator shows up here first.
"""

from __future__ import annotations

import json
import random
from typing import Any

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


def _raw_tx(old: bytes, new: bytes) -> bytes:
    return _tx().replace(old, new, 1)


Entry = tuple[str, bytes, "str | None"]

TRANSACTION_LINES: list[Entry] = [
    ("valid", _tx(), None),
    ("valid integer amount", _tx(amount=57), None),
    ("valid with spaces", json.dumps(GOOD_TX).encode(), None),
    ("valid padded", b" \t" + _tx() + b" ", None),
    ("valid fraction", _tx(event_time="2018-04-01T00:07:56.123456Z"), None),
    ("valid max id", _tx(transaction_id=2**63 - 1), None),
    ("valid unknown fields", _raw_tx(b"{", b'{"channel":"web","tags":[1,{"a":null}],'), None),
    ("valid non-ascii unknown", _raw_tx(b"{", '{"note":"café ☕",'.encode()), None),
    ("valid escaped key", _raw_tx(b'"amount"', b'"\\u0061mount"'), None),
    ("valid repeated member, last wins", _raw_tx(b"{", b'{"amount":-1,'), None),
    ("valid amount zero", _tx(amount=0.0), None),
    ("valid amount max", _tx(amount=100000.0), None),
    ("empty line", b"", "malformed_json"),
    ("not json", b"hello", "malformed_json"),
    ("truncated", _tx()[:-9], "malformed_json"),
    ("trailing comma", _raw_tx(b"}", b",}"), "malformed_json"),
    ("single quotes", _tx().replace(b'"', b"'"), "malformed_json"),
    ("trailing garbage", _tx() + b"x", "malformed_json"),
    ("two objects", _tx() + _tx(), "malformed_json"),
    ("leading zero", _raw_tx(b'"customer_id":2', b'"customer_id":02'), "malformed_json"),
    ("control char in string", _raw_tx(b"2018-04-01T", b"2018-04-01\x01T"), "malformed_json"),
    ("array", b"[1,2,3]", "not_an_object"),
    ("string", b'"text"', "not_an_object"),
    ("json null", b"null", "not_an_object"),
    ("number", b"42", "not_an_object"),
    ("empty object", b"{}", "missing_field"),
    ("missing id", _tx(transaction_id=...), "missing_field"),
    ("missing amount", _tx(amount=...), "missing_field"),
    ("null id", _tx(transaction_id=None), "null_field"),
    ("null time", _tx(event_time=None), "null_field"),
    ("string id", _tx(transaction_id="1"), "wrong_type"),
    ("float id", _tx(transaction_id=1.0), "wrong_type"),
    ("exponent id", _raw_tx(b'"transaction_id":1', b'"transaction_id":1e2'), "wrong_type"),
    ("boolean terminal", _tx(terminal_id=True), "wrong_type"),
    ("string amount", _tx(amount="57.5"), "wrong_type"),
    ("boolean amount", _tx(amount=False), "wrong_type"),
    ("array amount", _tx(amount=[1]), "wrong_type"),
    ("object amount", _tx(amount={"value": 1}), "wrong_type"),
    ("numeric time", _tx(event_time=1522541276), "wrong_type"),
    ("nan amount", _raw_tx(b"57.5", b"NaN"), "not_finite"),
    ("infinite amount", _raw_tx(b"57.5", b"Infinity"), "not_finite"),
    ("negative infinite amount", _raw_tx(b"57.5", b"-Infinity"), "not_finite"),
    ("overflowing amount", _raw_tx(b"57.5", b"1e400"), "not_finite"),
    ("nan id", _raw_tx(b'"transaction_id":1', b'"transaction_id":NaN'), "not_finite"),
    ("time with space", _tx(event_time="2018-04-01 00:07:56"), "bad_timestamp"),
    ("time with offset", _tx(event_time="2018-04-01T00:07:56+00:00"), "bad_timestamp"),
    ("time lower z", _tx(event_time="2018-04-01T00:07:56z"), "bad_timestamp"),
    ("time 7 fraction digits", _tx(event_time="2018-04-01T00:07:56.1234567Z"), "bad_timestamp"),
    ("time empty fraction", _tx(event_time="2018-04-01T00:07:56.Z"), "bad_timestamp"),
    ("time one-digit month", _tx(event_time="2018-4-01T00:07:56Z"), "bad_timestamp"),
    ("february 30", _tx(event_time="2018-02-30T00:00:00Z"), "bad_timestamp"),
    ("month 13", _tx(event_time="2018-13-01T00:00:00Z"), "bad_timestamp"),
    ("day 0", _tx(event_time="2018-04-00T00:00:00Z"), "bad_timestamp"),
    ("hour 24", _tx(event_time="2018-04-01T24:00:00Z"), "bad_timestamp"),
    ("leap second", _tx(event_time="2018-04-01T23:59:60Z"), "bad_timestamp"),
    ("year 0", _tx(event_time="0000-04-01T00:00:00Z"), "bad_timestamp"),
    ("negative amount", _tx(amount=-0.01), "out_of_range"),
    ("absurd amount", _tx(amount=1e9), "out_of_range"),
    ("just above max amount", _tx(amount=100000.00001), "out_of_range"),
    ("negative id", _tx(transaction_id=-5), "out_of_range"),
    ("id above 2^63-1", _tx(transaction_id=2**63), "out_of_range"),
    ("id of 45 digits", _tx(transaction_id=10**44), "out_of_range"),
    ("negative huge customer", _tx(customer_id=-(10**44)), "out_of_range"),
    ("byte-order mark", b"\xef\xbb\xbf" + _tx(), "encoding"),
    ("carriage return", _tx() + b"\r", "encoding"),
    ("invalid utf-8", _raw_tx(b"57.5", b"5\xff7"), "encoding"),
    ("invalid utf-8 and bom", b"\xef\xbb\xbf\xff" + _tx(), "encoding"),
    ("oversized", _raw_tx(b"{", b'{"pad":"' + b"x" * 70_000 + b'",'), "oversized"),
    ("first failing field wins", _tx(transaction_id="x", amount=-1), "wrong_type"),
    ("missing before wrong type", _tx(transaction_id=..., amount="x"), "missing_field"),
]


def _label(**changes: Any) -> bytes:
    return line(GOOD_LABEL, **changes)


LABEL_LINES: list[Entry] = [
    ("valid", _label(), None),
    ("valid not fraud, no scenario", _label(is_fraud=False, fraud_scenario=None), None),
    ("valid scenario absent", _label(fraud_scenario=...), None),
    ("missing is_fraud", _label(is_fraud=...), "missing_field"),
    ("null is_fraud", _label(is_fraud=None), "null_field"),
    ("numeric is_fraud", _label(is_fraud=1), "wrong_type"),
    ("string is_fraud", _label(is_fraud="true"), "wrong_type"),
    ("float scenario", _label(fraud_scenario=1.0), "wrong_type"),
    ("scenario out of range", _label(fraud_scenario=100), "out_of_range"),
    ("scenario above int", _label(fraud_scenario=2**40), "out_of_range"),
    ("nan is_fraud", _label().replace(b"true", b"NaN"), "wrong_type"),
    ("bad reported time", _label(reported_time="yesterday"), "bad_timestamp"),
]


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
