"""Contract checks in Spark: the decisions of `schemas.validation.validate_bytes`, per line.

`validate_lines(lines, contract)` takes one row per raw line (`raw_bytes`, binary, exactly as
received) and adds the reason a line is rejected (or null), a human-readable detail, which
validator decided (`decided_by`), and the contract's fields typed (null when rejected).
Timestamps come back as Spark timestamps (microseconds, UTC).

Two validators give the same decisions, in the precedence order of `schemas.validation`
(size, encoding, JSON syntax, object, then per field in contract order: missing, null, type,
NaN/Infinity, timestamp format, range):

* ``sql`` (default): byte-level checks, then, for lines in the plain flat-JSON shape every
  producer writes (one object of scalar members, printable ASCII, no escapes), the per-field
  checks as Spark SQL built from the contract's constraints (type, required, minimum, maximum,
  max_length, the timestamp pattern). No Python runs for those lines.
  Lines outside that shape (nested values, escapes, non-ASCII text, NaN/Infinity, malformed
  JSON) are few and go to the Python validator itself, a pandas UDF in the same projection
  (Sail calls it only for those lines): JSON parsers differ in corner cases (Sail's parser
  accepts trailing garbage and rejects duplicate keys, Python's does the opposite; Python
  accepts non-ASCII digits in timestamps), and only the Python validator decides exactly as
  the stream path does.
* ``python``: every line goes through the Python validator (the same UDF). A reference, and
  the fallback if an engine ever disagreed; about 1.3-2.7x slower on the validation step
  (bench/results/ingest.json, `parts`).

Why the flat shape is decided exactly in SQL: a line that fully matches `FLAT_OBJECT` is valid
JSON by construction (the pattern is a subset of the JSON grammar), it is an object, and
each member value is a scalar token that cannot contain `,"name":`, so a greedy regular
expression finds the *last* member with a name, which is the one Python's `json.loads` keeps
when a name repeats. Integer/number/string/boolean is then read off the token the way Python
types it (`1` int, `1.0` and `1e2` float).

Numbers are decided from their token as the Python validator reads it: an integer token
beyond an integer field's bounds (however many digits) is `out_of_range`; in a double field a
token is its double value, `not_finite` when that overflows (more than ~308 digits). Timestamps
are ASCII digits (`[0-9]`), a real instant, and inside the contract's range (`out_of_range`
otherwise, with the Python validator's detail).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from cardscore.schemas.contract import TIMESTAMP_PATTERN, Contract, Field, FieldType
from cardscore.schemas.reasons import RejectReason
from cardscore.schemas.timestamps import format_timestamp_us
from cardscore.schemas.validation import DEFAULT_MAX_BYTES, integer_bounds

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = [
    "DECIDED_BY_PYTHON",
    "DECIDED_BY_SQL",
    "FLAT_OBJECT",
    "RESULT_COLUMNS",
    "Validator",
    "decode_raw",
    "validate_lines",
]

Validator = Literal["sql", "python"]
DECIDED_BY_SQL = "sql"
DECIDED_BY_PYTHON = "python"
RESULT_COLUMNS = ("reason", "detail", "decided_by")

# ---- the plain flat-JSON shape (printable ASCII; JSON whitespace inside a line is space/tab)
_WS = r"[ \t]*"
_STRING = r'"[^"\\\t]*"'  # no escapes, no control characters (tab is the only one left)
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_VALUE = rf"(?:{_STRING}|{_NUMBER}|true|false|null)"
_MEMBER = rf"{_STRING}{_WS}:{_WS}{_VALUE}"
FLAT_OBJECT = rf"^{_WS}\{{{_WS}(?:{_MEMBER}(?:{_WS},{_WS}{_MEMBER})*)?{_WS}\}}{_WS}$"
_PRINTABLE_ASCII = r"^[\t\x20-\x7e]*$"
_INTEGER_TOKEN = r"^-?(?:0|[1-9][0-9]*)$"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BOM = "\ufeff"

# Python's datetime accepts years 1..9999 (the pattern already limits years to 4 digits).
_MIN_YEAR = 1


def decode_raw(raw_bytes: Column) -> Column:
    """The line as text: valid UTF-8 unchanged, invalid sequences replaced by U+FFFD."""
    from pyspark.sql import functions as F

    return F.call_function("make_valid_utf8", raw_bytes)


def validate_lines(
    lines: DataFrame,
    contract: Contract,
    max_bytes: int = DEFAULT_MAX_BYTES,
    validator: Validator = "sql",
) -> DataFrame:
    """`lines` plus `reason`, `detail`, `decided_by` and the contract's fields, typed.

    `lines` needs a binary `raw_bytes` column; its other columns are kept. One pass: the
    Python validator is a column computed only for the lines the SQL checks leave to it (on
    Sail; classic Spark evaluates a Python UDF for every row of its batch, with the same
    result).
    """
    from pyspark.sql import functions as F

    clash = {c for f in contract.fields for c in (f.name, _wire_name(f), _token_name(f))} & set(lines.columns)
    if clash:
        raise ValueError(f"lines already have columns named like contract fields: {sorted(clash)}")
    for f in contract.fields:
        if not _NAME.match(f.name):
            raise ValueError(f"field name {f.name!r} cannot be matched by the SQL validator")
    if validator not in ("sql", "python"):
        raise ValueError(f"unknown validator {validator!r}; expected 'sql' or 'python'")

    python = _python_udf(contract, max_bytes)
    if validator == "python":
        staged = lines.withColumn("__py", python(F.col("raw_bytes")))
        return staged.select(
            *lines.columns,
            *[F.col(f"__py.{c}").alias(c) for c in RESULT_COLUMNS],
            *[_typed(f, F.col(f"__py.{_wire_name(f)}")) for f in contract.fields],
        )

    text = F.when(
        F.call_function("is_valid_utf8", F.col("raw_bytes")),
        F.col("raw_bytes").try_cast("string"),
    )
    # A few wide projections rather than one per column: planning cost grows with plan depth.
    staged = lines.withColumn("__text", text)
    staged = staged.withColumn("__byte_outcome", _byte_checks(F.col("raw_bytes"), F.col("__text"), max_bytes))
    staged = staged.withColumn(
        "__in_sql",
        F.col("__byte_outcome").isNotNull()
        | (F.col("__text").rlike(_PRINTABLE_ASCII) & F.col("__text").rlike(FLAT_OBJECT)),
    )
    in_sql = F.col("__in_sql")
    flat = in_sql & F.col("__byte_outcome").isNull()
    staged = staged.withColumns(
        {
            "__py": F.when(~in_sql, python(F.col("raw_bytes"))),
            **{_token_name(f): F.when(flat, _member_token(F.col("__text"), f.name)) for f in contract.fields},
        }
    )
    staged = staged.withColumns({name: value for f in contract.fields for name, value in _derived(f).items()})
    # Timestamp micros read the inner string computed just above.
    staged = staged.withColumns(
        {f"__us_{f.name}": _timestamp_micros(_col(f, "str")) for f in contract.fields if f.type == FieldType.TIMESTAMP}
    )
    staged = staged.withColumn(
        "__outcome", F.coalesce(F.col("__byte_outcome"), _field_checks(contract))
    )
    sql_valid = F.col("__outcome").isNull()
    return staged.select(
        *lines.columns,
        F.when(in_sql, _outcome_reason(F.col("__outcome"))).otherwise(F.col("__py.reason")).alias("reason"),
        F.when(in_sql, _outcome_detail(F.col("__outcome"))).otherwise(F.col("__py.detail")).alias("detail"),
        F.when(in_sql, F.lit(DECIDED_BY_SQL)).otherwise(F.col("__py.decided_by")).alias("decided_by"),
        *[
            _typed(f, F.when(in_sql, F.when(sql_valid, _wire_value(f))).otherwise(F.col(f"__py.{_wire_name(f)}")))
            for f in contract.fields
        ],
    )


# --------------------------------------------------------------------------- SQL checks


# An outcome is "reason<US>detail" in one string: CASE branches of one type (some engines
# refuse to merge struct branches whose fields differ only in nullability).
_SEP = "\x1f"


def _outcome(reason: RejectReason, detail: Column) -> Column:
    from pyspark.sql import functions as F

    return F.concat(F.lit(reason.value + _SEP), detail)


def _outcome_reason(outcome: Column) -> Column:
    from pyspark.sql import functions as F

    return F.substring_index(outcome, _SEP, 1)


def _outcome_detail(outcome: Column) -> Column:
    from pyspark.sql import functions as F

    return F.substring(outcome, F.instr(outcome, _SEP) + F.lit(1), F.lit(1 << 30))


def _byte_checks(raw_bytes: Column, text: Column, max_bytes: int) -> Column:
    """Size, then encoding: byte-order mark, carriage return, invalid UTF-8 (Python's order)."""
    from pyspark.sql import functions as F

    size = F.octet_length(raw_bytes)
    return (
        F.when(
            size > F.lit(max_bytes),
            _outcome(
                RejectReason.OVERSIZED,
                F.concat(size.cast("string"), F.lit(f" bytes > limit {max_bytes}")),
            ),
        )
        # A BOM is three bytes EF BB BF; compare hex so lines that are not UTF-8 are covered too.
        .when(
            F.hex(raw_bytes).startswith("EFBBBF"),
            _outcome(RejectReason.ENCODING, F.lit("starts with a UTF-8 byte-order mark")),
        )
        .when(
            text.contains("\r"),
            _outcome(RejectReason.ENCODING, F.lit("contains a carriage return (CRLF line ending)")),
        )
        .when(text.isNull(), _outcome(RejectReason.ENCODING, F.lit("not valid UTF-8")))
    )


def _member_token(text: Column, name: str) -> Column:
    """The raw value token of the last member called `name` ('' when absent)."""
    from pyspark.sql import functions as F

    pattern = rf'^.*[{{,]{_WS}"{name}"{_WS}:{_WS}("[^"]*"|[^,}} \t]+)'
    return F.regexp_extract(text, pattern, 1)


def _token_name(f: Field) -> str:
    return f"__tok_{f.name}"


def _wire_name(f: Field) -> str:
    return f"__wire_{f.name}"


def _field_checks(contract: Contract) -> Column:
    """The first failing field check, in contract order, as an outcome string (or null)."""
    from pyspark.sql import functions as F

    chain = None
    for f in contract.fields:
        for condition, reason, detail in _checks_for(f):
            if chain is None:
                chain = F.when(condition, _outcome(reason, detail))
            else:
                chain = chain.when(condition, _outcome(reason, detail))
    if chain is None:  # a contract without fields accepts every object
        return F.lit(None).cast("string")
    return chain


def _col(f: Field, what: str) -> Column:
    """A per-field intermediate column (computed once, used by checks and values)."""
    from pyspark.sql import functions as F

    return F.col(f"__{what}_{f.name}")


def _derived(f: Field) -> dict[str, Column]:
    """Per-field intermediate columns read off the field's token."""
    from pyspark.sql import functions as F

    tok = F.col(_token_name(f))
    out: dict[str, Column] = {}
    if f.type in (FieldType.LONG, FieldType.INT):
        out[f"__int_{f.name}"] = tok.rlike(_INTEGER_TOKEN)
        out[f"__dec_{f.name}"] = tok.try_cast("decimal(38,0)")
    elif f.type == FieldType.DOUBLE:
        out[f"__dbl_{f.name}"] = F.when(~tok.startswith('"') & ~tok.isin("true", "false", "null", ""), tok.try_cast("double"))
    elif f.type in (FieldType.TIMESTAMP, FieldType.STRING, FieldType.DATE):
        out[f"__str_{f.name}"] = F.when(tok.startswith('"'), _string_inner(tok))
    return out


def _checks_for(f: Field) -> list[tuple[Column, RejectReason, Column]]:
    """Conditions for one field, each assuming the previous ones (and earlier fields) passed.

    The conditions of a field are guarded so that a field that is absent or null (and allowed
    to be) produces no rejection.
    """
    from pyspark.sql import functions as F

    tok = F.col(_token_name(f))
    name = f.name
    absent = tok == F.lit("")
    null = tok == F.lit("null")
    present = ~absent & ~null
    is_string = tok.startswith('"')
    is_bool = tok.isin("true", "false")
    kind = F.when(is_string, F.lit("string")).when(is_bool, F.lit("boolean")).otherwise(F.lit("number"))
    checks: list[tuple[Column, RejectReason, Column]] = []
    if not f.nullable:
        checks.append((absent, RejectReason.MISSING_FIELD, F.lit(f"required field '{name}' is missing")))
        checks.append((null, RejectReason.NULL_FIELD, F.lit(f"required field '{name}' is null")))

    def got(prefix: str) -> Column:
        return F.concat(F.lit(f"'{name}' {prefix}, got "), kind)

    if f.type in (FieldType.LONG, FieldType.INT):
        checks.append((present & ~_col(f, "int"), RejectReason.WRONG_TYPE, got("must be an integer")))
        lo, hi = integer_bounds(f)
        number = _col(f, "dec")
        # Tokens longer than 38 digits do not fit a decimal: their sign says which bound they break.
        below = F.when(number.isNull(), tok.startswith("-")).otherwise(number < _decimal(lo))
        above = F.when(number.isNull(), ~tok.startswith("-")).otherwise(number > _decimal(hi))
        checks.append((present & below, RejectReason.OUT_OF_RANGE, _range_detail(name, tok, "below minimum", lo)))
        checks.append((present & above, RejectReason.OUT_OF_RANGE, _range_detail(name, tok, "above maximum", hi)))
    elif f.type == FieldType.DOUBLE:
        checks.append((present & (is_string | is_bool), RejectReason.WRONG_TYPE, got("must be a number")))
        value = _col(f, "dbl")
        infinite = value.isin(float("inf"), float("-inf"))
        checks.append(
            (
                present & infinite,
                RejectReason.NOT_FINITE,
                F.concat(F.lit(f"'{name}' is "), F.when(value > 0, F.lit("inf")).otherwise(F.lit("-inf"))),
            )
        )
        if f.minimum is not None:
            checks.append(
                (present & (value < F.lit(float(f.minimum))), RejectReason.OUT_OF_RANGE,
                 _range_detail(name, tok, "below minimum", f.minimum))
            )
        if f.maximum is not None:
            checks.append(
                (present & (value > F.lit(float(f.maximum))), RejectReason.OUT_OF_RANGE,
                 _range_detail(name, tok, "above maximum", f.maximum))
            )
    elif f.type == FieldType.BOOLEAN:
        checks.append((present & ~is_bool, RejectReason.WRONG_TYPE, got("must be true/false")))
    elif f.type == FieldType.TIMESTAMP:
        checks.append((present & ~is_string, RejectReason.WRONG_TYPE, got("must be a string timestamp")))
        checks.append(
            (present & ~_col(f, "str").rlike(TIMESTAMP_PATTERN), RejectReason.BAD_TIMESTAMP,
             F.lit(f"'{name}': expected RFC 3339 UTC timestamp like 2018-04-01T00:07:56Z"))
        )
        micros = _col(f, "us")
        checks.append(
            (present & micros.isNull(), RejectReason.BAD_TIMESTAMP, F.lit(f"'{name}': not a real date and time"))
        )
        text = _col(f, "str")
        if f.minimum is not None:
            checks.append(
                (present & (micros < F.lit(int(f.minimum))), RejectReason.OUT_OF_RANGE,
                 _time_range_detail(name, text, "before", f.minimum))
            )
        if f.maximum is not None:
            checks.append(
                (present & (micros > F.lit(int(f.maximum))), RejectReason.OUT_OF_RANGE,
                 _time_range_detail(name, text, "after", f.maximum))
            )
    elif f.type in (FieldType.STRING, FieldType.DATE):
        checks.append((present & ~is_string, RejectReason.WRONG_TYPE, got("must be a string")))
        if f.max_length is not None:
            checks.append(
                (present & (F.char_length(_col(f, "str")) > F.lit(f.max_length)),
                 RejectReason.OUT_OF_RANGE, F.lit(f"'{name}' longer than {f.max_length}"))
            )
    else:  # pragma: no cover - a new FieldType must be taught to both validators
        raise ValueError(f"field {name}: no SQL check for type {f.type}")
    return checks


def _decimal(value: int) -> Column:
    from pyspark.sql import functions as F

    return F.lit(str(value)).cast("decimal(38,0)")


def _range_detail(name: str, tok: Column, words: str, bound: Any) -> Column:
    from pyspark.sql import functions as F

    return F.concat(F.lit(f"'{name}'="), tok, F.lit(f" {words} {bound}"))


def _time_range_detail(name: str, text: Column, words: str, bound: float) -> Column:
    """`'event_time'=2300-01-01T00:00:00Z after 2199-12-31T23:59:59.999999Z`, as in Python."""
    from pyspark.sql import functions as F

    return F.concat(F.lit(f"'{name}'="), text, F.lit(f" {words} {format_timestamp_us(int(bound))}"))


def _string_inner(tok: Column) -> Column:
    """The text between the quotes of a string token."""
    from pyspark.sql import functions as F

    return F.substring(tok, F.lit(2), F.length(tok) - F.lit(2))


def _timestamp_micros(inner: Column) -> Column:
    """Microseconds since the epoch of a pattern-valid timestamp text, or null if not an instant."""
    from pyspark.sql import functions as F

    def part(start: int, length: int) -> Column:
        return F.substring(inner, start, length).try_cast("int")

    year, month, day, hour, minute, second = part(1, 4), part(6, 2), part(9, 2), part(12, 2), part(15, 2), part(18, 2)
    in_range = (
        (year >= _MIN_YEAR)
        & month.between(1, 12)
        & day.between(1, 31)
        & hour.between(0, 23)
        & minute.between(0, 59)
        & second.between(0, 59)
    )
    whole = F.call_function(
        "try_to_timestamp", F.substring(inner, 1, 19), F.lit("yyyy-MM-dd'T'HH:mm:ss")
    )
    # Fraction digits sit between the 20th character (the dot) and the final Z.
    fraction = F.substring(inner, F.lit(21), F.length(inner) - F.lit(21))
    fraction_micros = F.when(F.length(inner) == 20, F.lit(0)).otherwise(F.rpad(fraction, 6, "0").try_cast("bigint"))
    micros = F.unix_micros(whole) + fraction_micros
    # Guarded: the date functions of some engines raise (not null) on year 0.
    return F.when(inner.rlike(TIMESTAMP_PATTERN) & in_range, micros)


def _wire_value(f: Field) -> Column:
    """The field's value as the Python validator returns it (timestamps as micros)."""
    from pyspark.sql import functions as F

    tok = F.col(_token_name(f))
    present = (tok != F.lit("")) & (tok != F.lit("null"))
    if f.type == FieldType.LONG:
        value = _col(f, "dec").cast("bigint")
    elif f.type == FieldType.INT:
        value = _col(f, "dec").cast("int")
    elif f.type == FieldType.DOUBLE:
        value = _col(f, "dbl")
    elif f.type == FieldType.BOOLEAN:
        value = tok == F.lit("true")
    elif f.type == FieldType.TIMESTAMP:
        value = _col(f, "us")
    else:
        value = _col(f, "str")
    return F.when(present, value)


# --------------------------------------------------------------------------- Python checks

_WIRE_SPARK_TYPES = {
    FieldType.LONG: "bigint",
    FieldType.INT: "int",
    FieldType.DOUBLE: "double",
    FieldType.BOOLEAN: "boolean",
    FieldType.TIMESTAMP: "bigint",  # microseconds
    FieldType.STRING: "string",
    FieldType.DATE: "string",
}
_PANDAS_DTYPES = {
    FieldType.LONG: "Int64",
    FieldType.INT: "Int32",
    FieldType.DOUBLE: "Float64",
    FieldType.BOOLEAN: "boolean",
    FieldType.TIMESTAMP: "Int64",
    FieldType.STRING: "object",
    FieldType.DATE: "object",
}


def _python_udf(contract: Contract, max_bytes: int) -> Any:
    """A pandas UDF: raw bytes -> struct(reason, detail, decided_by, wire values) by `validate_bytes`."""
    from pyspark.sql.functions import pandas_udf

    fields = ", ".join(
        ["reason: string", "detail: string", "decided_by: string"]
        + [f"{_wire_name(f)}: {_WIRE_SPARK_TYPES[f.type]}" for f in contract.fields]
    )
    return pandas_udf(_python_decider(contract.name, max_bytes), f"struct<{fields}>")  # type: ignore[call-overload]


def _python_decider(contract_name: str, max_bytes: int) -> Any:
    """A picklable function applying `validate_bytes` to a batch of lines."""

    def decide(raw_lines: Any) -> Any:
        import pandas as pd

        from cardscore.schemas.contracts import ALL_CONTRACTS
        from cardscore.schemas.validation import Rejection, validate_bytes

        contract = ALL_CONTRACTS[contract_name]
        reasons: list[str | None] = []
        details: list[str | None] = []
        values: dict[str, list[Any]] = {f.name: [] for f in contract.fields}
        for raw in raw_lines:
            result = validate_bytes(bytes(raw), contract, max_bytes)  # never raises
            if isinstance(result, Rejection):
                reasons.append(result.reason.value)
                details.append(result.detail)
                for column in values.values():
                    column.append(None)
            else:
                reasons.append(None)
                details.append(None)
                for f in contract.fields:
                    values[f.name].append(result[f.name])
        frame = {
            "reason": pd.Series(reasons, dtype="object"),
            "detail": pd.Series(details, dtype="object"),
            "decided_by": pd.Series([DECIDED_BY_PYTHON] * len(reasons), dtype="object"),
        }
        for f in contract.fields:
            frame[_wire_name(f)] = pd.Series(pd.array(values[f.name], dtype=_PANDAS_DTYPES[f.type]))
        return pd.DataFrame(frame)

    import pandas as pd

    # Real classes, not strings: pandas_udf reads the hints to pick a Series -> DataFrame UDF.
    decide.__annotations__ = {"raw_lines": pd.Series, "return": pd.DataFrame}
    return decide


# --------------------------------------------------------------------------- typed output


def _typed(f: Field, wire: Column) -> Column:
    """A wire value (timestamps as micros) as the contract's typed column."""
    from pyspark.sql import functions as F

    if f.type == FieldType.TIMESTAMP:
        value = F.timestamp_micros(wire)
    elif f.type == FieldType.DATE:
        value = F.to_date(wire)
    else:
        value = wire
    return value.alias(f.name)
