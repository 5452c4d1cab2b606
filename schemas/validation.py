"""Record validation against a contract, in plain Python (the stream path and test oracle).

The checks, in this order (the first failure is the record's reason, so batch and stream
agree on one reason per record):

1. size (`OVERSIZED`), 2. encoding: UTF-8, no byte-order mark, no CR (`ENCODING`),
3. JSON syntax (`MALFORMED_JSON`), 4. top level is an object (`NOT_AN_OBJECT`),
5. per field, in contract order: absent (`MISSING_FIELD`), null when required (`NULL_FIELD`),
   JSON type (`WRONG_TYPE`), NaN/Infinity (`NOT_FINITE`), timestamp format (`BAD_TIMESTAMP`),
   minimum/maximum (`OUT_OF_RANGE`).

Integers must be JSON integers (`12`, not `12.0` or `"12"`); doubles accept integers;
booleans are never numbers. Unknown fields are ignored (additive producer changes).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from cardscore.schemas.contract import Contract, Field, FieldType
from cardscore.schemas.reasons import RejectReason
from cardscore.schemas.timestamps import parse_timestamp_us

DEFAULT_MAX_BYTES = 64 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str

    def __bool__(self) -> bool:  # a rejection is falsy, so `if result:` reads naturally
        return False


def validate_bytes(
    raw: bytes, contract: Contract, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any] | Rejection:
    """A typed record (timestamps as int microseconds) or the reason it was rejected."""
    if len(raw) > max_bytes:
        return Rejection(RejectReason.OVERSIZED, f"{len(raw)} bytes > limit {max_bytes}")
    if raw.startswith(_BOM):
        return Rejection(RejectReason.ENCODING, "starts with a UTF-8 byte-order mark")
    if b"\r" in raw:
        return Rejection(RejectReason.ENCODING, "contains a carriage return (CRLF line ending)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.ENCODING, f"not valid UTF-8 at byte {exc.start}")
    return validate_text(text, contract)


def validate_text(text: str, contract: Contract) -> dict[str, Any] | Rejection:
    obj = parse_json(text)
    if isinstance(obj, Rejection):
        return obj
    return validate_object(obj, contract)


def parse_json(text: str) -> Any | Rejection:
    """A JSON document, with NaN/Infinity kept so `validate_object` names them NOT_FINITE
    (for callers that take several records in one document, e.g. an HTTP batch)."""
    try:
        return json.loads(text, parse_constant=_keep_constant)
    except (json.JSONDecodeError, RecursionError) as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"invalid JSON: {exc.msg if hasattr(exc, 'msg') else exc}")


def validate_object(obj: Any, contract: Contract) -> dict[str, Any] | Rejection:
    if not isinstance(obj, dict):
        return Rejection(RejectReason.NOT_AN_OBJECT, f"top level is {type(obj).__name__}, not an object")
    record: dict[str, Any] = {}
    for field in contract.fields:
        if field.name not in obj:
            if field.nullable:
                record[field.name] = None
                continue
            return Rejection(RejectReason.MISSING_FIELD, f"required field '{field.name}' is missing")
        result = _check_field(field, obj[field.name])
        if isinstance(result, Rejection):
            return result
        record[field.name] = result
    return record


class _Constant(float):
    """NaN/Infinity as parsed from JSON, marked so they are reported as NOT_FINITE."""


def _keep_constant(name: str) -> float:
    return _Constant(float(name.replace("Infinity", "inf")))


def _check_field(field: Field, value: Any) -> Any:
    name = field.name
    if value is None:
        if field.nullable:
            return None
        return Rejection(RejectReason.NULL_FIELD, f"required field '{name}' is null")
    kind = field.type
    if kind in (FieldType.LONG, FieldType.INT):
        if isinstance(value, _Constant):
            return Rejection(RejectReason.NOT_FINITE, f"'{name}' is {value!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be an integer, got {_json_kind(value)}")
    elif kind == FieldType.DOUBLE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be a number, got {_json_kind(value)}")
        if not math.isfinite(value):
            return Rejection(RejectReason.NOT_FINITE, f"'{name}' is {value!r}")
        value = float(value)
    elif kind == FieldType.BOOLEAN:
        if not isinstance(value, bool):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be true/false, got {_json_kind(value)}")
    elif kind == FieldType.TIMESTAMP:
        if not isinstance(value, str):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be a string timestamp, got {_json_kind(value)}")
        try:
            value = parse_timestamp_us(value)
        except ValueError as exc:
            return Rejection(RejectReason.BAD_TIMESTAMP, f"'{name}': {exc}")
    elif kind in (FieldType.STRING, FieldType.DATE):
        if not isinstance(value, str):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be a string, got {_json_kind(value)}")
        if field.max_length is not None and len(value) > field.max_length:
            return Rejection(RejectReason.OUT_OF_RANGE, f"'{name}' longer than {field.max_length}")
    if field.minimum is not None and isinstance(value, int | float) and value < field.minimum:
        return Rejection(RejectReason.OUT_OF_RANGE, f"'{name}'={value} below minimum {field.minimum}")
    if field.maximum is not None and isinstance(value, int | float) and value > field.maximum:
        return Rejection(RejectReason.OUT_OF_RANGE, f"'{name}'={value} above maximum {field.maximum}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
