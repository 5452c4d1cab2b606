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

Whatever the bytes, the validator returns a record or a rejection and never raises. Numbers
are read safely: an integer token longer than any contract bound (thousands of digits would
raise Python's int-string limit, hundreds overflow a float) is kept as its sign and its value
as a double, so it is `OUT_OF_RANGE` in an integer field and what its double is in a double
field (`NOT_FINITE` beyond 1.8e308), exactly what the Spark validator decides from the token.
Timestamps are ASCII digits only, and their range is the contract's, in microseconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from cardscore.schemas.contract import Contract, Field, FieldType
from cardscore.schemas.reasons import RejectReason
from cardscore.schemas.timestamps import format_timestamp_us, parse_timestamp_us

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
    accepted = _accepted_fast(text, contract)
    if accepted is not None:
        return accepted
    obj = parse_json(text)
    if isinstance(obj, Rejection):
        return obj
    try:
        return validate_object(obj, contract)
    except Exception as exc:  # a validator bug must not stop a stream or a batch: say so
        return Rejection(RejectReason.UNPROCESSABLE, f"the validator failed on this record: {type(exc).__name__}")


def parse_json(text: str) -> Any | Rejection:
    """A JSON document, with NaN/Infinity kept so `validate_object` names them NOT_FINITE
    (for callers that take several records in one document, e.g. an HTTP batch)."""
    if text.startswith("\ufeff"):  # what json.loads says (the decoder alone does not check)
        return Rejection(RejectReason.MALFORMED_JSON, "invalid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig)")
    try:
        return _DECODER.decode(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"invalid JSON: {exc.msg if hasattr(exc, 'msg') else exc}")


# The stream validates every message, and most are plain valid records. orjson decodes them
# several times faster than the stdlib decoder, but differs from it on what is unusual: NaN and
# Infinity are errors, integers beyond 64 bits become floats, its nesting limit is not Python's
# recursion limit, lone surrogates are errors. So its document is used only to ACCEPT a record:
# when the accepting checks take every field's value, a value both decoders give identically
# (an int in bounds, a finite float, a string, a boolean). Everything else, every rejection
# included, is decided on the stdlib decoder's document, with its reasons.
_FAST_MAX_BRACKETS = 64  # more opening brackets (nesting, even in strings): the stdlib path


def _accepted_fast(text: str, contract: Contract) -> dict[str, Any] | None:
    """The record, when the fast decoder's document passes every accepting check; else None."""
    if text.count("{") + text.count("[") > _FAST_MAX_BRACKETS:
        return None
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    record: dict[str, Any] = {}
    for field, accept in _accepting_checks(contract):
        name = field.name
        if name not in obj:
            if not field.nullable:
                return None
            record[name] = None
            continue
        value = accept(obj[name])
        if value is _UNDECIDED:
            return None
        record[name] = value
    return record


def validate_object(obj: Any, contract: Contract) -> dict[str, Any] | Rejection:
    if not isinstance(obj, dict):
        return Rejection(RejectReason.NOT_AN_OBJECT, f"top level is {type(obj).__name__}, not an object")
    record: dict[str, Any] = {}
    for field, accept in _accepting_checks(contract):
        name = field.name
        if name not in obj:
            if field.nullable:
                record[name] = None
                continue
            return Rejection(RejectReason.MISSING_FIELD, f"required field '{name}' is missing")
        value = obj[name]
        result = accept(value)
        if result is _UNDECIDED:  # anything unusual: the full check decides, with its reason
            result = _check_field(field, value)
            if isinstance(result, Rejection):
                return result
        record[name] = result
    return record


# The stream validates every message: the common valid value is accepted by a check compiled
# once per field (bounds precomputed, exact types); whatever it does not accept (wrong types,
# bounds, NaN, nulls, huge integers) goes to `_check_field`, which decides and names the reason.
# An accepting check returns exactly what `_check_field` returns for the values it accepts.
_UNDECIDED = object()
_ACCEPTING: dict[int, tuple[Contract, tuple[tuple[Field, Callable[[Any], Any]], ...]]] = {}


def _accepting_checks(contract: Contract) -> tuple[tuple[Field, Callable[[Any], Any]], ...]:
    cached = _ACCEPTING.get(id(contract))
    if cached is None or cached[0] is not contract:
        cached = (contract, tuple((field, _accepting_check(field)) for field in contract.fields))
        _ACCEPTING[id(contract)] = cached
    return cached[1]


def _accepting_check(field: Field) -> Callable[[Any], Any]:
    kind = field.type
    if kind in (FieldType.LONG, FieldType.INT):
        lo, hi = integer_bounds(field)

        def accept_integer(value: Any) -> Any:
            return value if type(value) is int and lo <= value <= hi else _UNDECIDED

        return accept_integer
    if kind == FieldType.DOUBLE:
        d_lo = -math.inf if field.minimum is None else field.minimum
        d_hi = math.inf if field.maximum is None else field.maximum

        def accept_double(value: Any) -> Any:
            # NaN fails every comparison; the JSON constants are a float subclass: undecided
            if type(value) is float and -math.inf < value < math.inf and d_lo <= value <= d_hi:
                return value
            return _UNDECIDED

        return accept_double
    if kind == FieldType.TIMESTAMP:
        t_lo = -math.inf if field.minimum is None else field.minimum
        t_hi = math.inf if field.maximum is None else field.maximum

        def accept_timestamp(value: Any) -> Any:
            if type(value) is not str:
                return _UNDECIDED
            try:
                micros = parse_timestamp_us(value)
            except ValueError:
                return _UNDECIDED
            return micros if t_lo <= micros <= t_hi else _UNDECIDED

        return accept_timestamp
    if kind == FieldType.BOOLEAN:

        def accept_boolean(value: Any) -> Any:
            return value if type(value) is bool else _UNDECIDED

        return accept_boolean
    if kind in (FieldType.STRING, FieldType.DATE):
        longest = math.inf if field.max_length is None else field.max_length

        def accept_string(value: Any) -> Any:
            return value if type(value) is str and len(value) <= longest else _UNDECIDED

        return accept_string
    return _undecided  # a type without an accepting check: `_check_field` decides every value


def _undecided(_value: Any) -> Any:
    return _UNDECIDED


class _Constant(float):
    """NaN/Infinity as parsed from JSON, marked so they are reported as NOT_FINITE."""


def _keep_constant(name: str) -> float:
    return _Constant(float(name.replace("Infinity", "inf")))


# Integer tokens up to this many characters become Python ints; every contract bound has at
# most 20 (the sign and 19 digits of 2**63 - 1), so a longer token is beyond them all.
_EXACT_INTEGER_CHARS = 24


class _HugeInteger(float):
    """An integer token too long for any bound: its value as a double (inf beyond the double
    range, like the Spark cast of the token) and its length. Never converted to an int."""

    digits: int


def _parse_int(token: str) -> int | float:
    if len(token) <= _EXACT_INTEGER_CHARS:
        return int(token)
    huge = _HugeInteger(token)  # float(str) has no digit limit and never raises: inf at worst
    huge.digits = len(token.lstrip("-"))
    return huge


# One decoder for every document (json.loads with options builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_keep_constant, parse_int=_parse_int)


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
        lo, hi = integer_bounds(field)
        if isinstance(value, _HugeInteger):
            side = f"below minimum {lo}" if value < 0 else f"above maximum {hi}"
            return Rejection(RejectReason.OUT_OF_RANGE, f"'{name}' is an integer of {value.digits} digits, {side}")
        if isinstance(value, bool) or not isinstance(value, int):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be an integer, got {_json_kind(value)}")
        if value < lo:
            return Rejection(RejectReason.OUT_OF_RANGE, f"'{name}'={value} below minimum {lo}")
        if value > hi:
            return Rejection(RejectReason.OUT_OF_RANGE, f"'{name}'={value} above maximum {hi}")
        return value
    elif kind == FieldType.DOUBLE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be a number, got {_json_kind(value)}")
        # ints here have at most _EXACT_INTEGER_CHARS characters: float() cannot overflow
        value = float(value)
        if not math.isfinite(value):
            return Rejection(RejectReason.NOT_FINITE, f"'{name}' is {value!r}")
    elif kind == FieldType.BOOLEAN:
        if not isinstance(value, bool):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be true/false, got {_json_kind(value)}")
    elif kind == FieldType.TIMESTAMP:
        if not isinstance(value, str):
            return Rejection(RejectReason.WRONG_TYPE, f"'{name}' must be a string timestamp, got {_json_kind(value)}")
        try:
            micros = parse_timestamp_us(value)
        except ValueError as exc:
            return Rejection(RejectReason.BAD_TIMESTAMP, f"'{name}': {exc}")
        if field.minimum is not None and micros < field.minimum:
            return Rejection(RejectReason.OUT_OF_RANGE, _time_range_detail(name, value, "before", field.minimum))
        if field.maximum is not None and micros > field.maximum:
            return Rejection(RejectReason.OUT_OF_RANGE, _time_range_detail(name, value, "after", field.maximum))
        return micros
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


_TYPE_BOUNDS = {FieldType.LONG: (-(2**63), 2**63 - 1), FieldType.INT: (-(2**31), 2**31 - 1)}


def integer_bounds(field: Field) -> tuple[int, int]:
    """An integer field's accepted range: the contract's bounds, narrowed to what its type
    (64- or 32-bit) holds. Both validators use it."""
    type_lo, type_hi = _TYPE_BOUNDS[field.type]
    lo = type_lo if field.minimum is None else max(type_lo, math.ceil(field.minimum))
    hi = type_hi if field.maximum is None else min(type_hi, math.floor(field.maximum))
    return lo, hi


def _time_range_detail(name: str, text: str, words: str, bound: float) -> str:
    """The same words as the Spark validator's (`schemas.spark_validation`)."""
    return f"'{name}'={text} {words} {format_timestamp_us(int(bound))}"


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
