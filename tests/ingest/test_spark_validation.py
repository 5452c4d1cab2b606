"""The Spark validator decides every line exactly as the Python validator (batch = stream)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cardscore.schemas.contract import Contract, FieldType
from cardscore.schemas.contracts import LABEL_EVENT, TRANSACTION_EVENT
from cardscore.schemas.spark_validation import validate_lines
from cardscore.schemas.validation import Rejection, validate_bytes
from tests.corpus import LABEL_LINES, TRANSACTION_LINES, fuzz_lines

# Kinds of bad record the SQL checks (not the Python fallback) must decide on their own.
DECIDED_IN_SQL = {
    "valid", "valid integer amount", "valid with spaces", "valid padded", "valid fraction",
    "valid max id", "valid repeated member, last wins", "empty object", "missing id", "null id",
    "string id", "float id", "exponent id", "boolean terminal", "string amount", "numeric time",
    "overflowing amount", "time with space", "february 30", "hour 24", "leap second", "year 0",
    "negative amount", "absurd amount", "id above 2^63-1", "id of 45 digits", "byte-order mark",
    "carriage return", "invalid utf-8", "oversized", "first failing field wins",
    "valid huge unknown integer", "valid first instant of the range", "valid last instant of the range",
    "amount of 400 digits", "amount of 5000 digits", "amount of 200 digits", "customer of 5000 digits",
    "negative terminal of 5000 digits", "time in year 1", "time just before 1970 with a fraction",
    "time just after the range", "time past pandas' nanoseconds", "time in 9999",
    "valid report at the first instant of the range", "valid report at the last instant of the range",
    "report in year 1", "report just before 1970", "report just after the range", "report in 9999",
}


def python_decision(raw: bytes, contract: Contract) -> tuple[str | None, dict[str, Any] | None]:
    result = validate_bytes(raw, contract)
    if isinstance(result, Rejection):
        return result.reason.value, None
    return None, result


def lines_frame(spark, lines: list[bytes]):
    table = pa.table(
        {
            "source_file": pa.array(["corpus"] * len(lines)),
            "line_number": pa.array(range(1, len(lines) + 1), pa.int64()),
            "raw_bytes": pa.array(lines, pa.binary()),
        }
    )
    return spark.createDataFrame(table)


def spark_decisions(spark, lines: list[bytes], contract: Contract, validator: str) -> dict[int, Any]:
    from pyspark.sql import functions as F

    checked = validate_lines(lines_frame(spark, lines), contract, validator=validator)
    # Timestamps as epoch microseconds, computed by the engine (no client time-zone games).
    micros = [F.unix_micros(f.name).alias(f"us_{f.name}") for f in contract.fields if f.type == FieldType.TIMESTAMP]
    return {row.line_number: row for row in checked.select("*", *micros).collect()}


def typed_as_python(row: Any, contract: Contract) -> dict[str, Any]:
    """A Spark row's contract fields in the Python validator's representation."""
    return {
        f.name: getattr(row, f"us_{f.name}" if f.type == FieldType.TIMESTAMP else f.name)
        for f in contract.fields
    }


@pytest.mark.parametrize("validator", ["sql", "python"])
@pytest.mark.parametrize(
    ("contract", "corpus"),
    [(TRANSACTION_EVENT, TRANSACTION_LINES), (LABEL_EVENT, LABEL_LINES)],
    ids=["transactions", "labels"],
)
def test_each_bad_kind_gets_the_python_reason(spark, contract, corpus, validator) -> None:
    lines = [raw for _, raw, _ in corpus]
    rows = spark_decisions(spark, lines, contract, validator)
    assert len(rows) == len(lines)
    for number, (name, raw, expected) in enumerate(corpus, start=1):
        row = rows[number]
        reason, record = python_decision(raw, contract)
        assert reason == expected, f"corpus entry {name!r} is stale: Python now says {reason}"
        assert row.reason == expected, f"{name}: spark {validator} said {row.reason} ({row.detail})"
        if expected is None:
            assert typed_as_python(row, contract) == record, name
            assert row.detail is None
        else:
            assert row.detail, name
            assert all(getattr(row, f.name) is None for f in contract.fields), name
        if validator == "python":
            assert row.decided_by == "python"
        elif name in DECIDED_IN_SQL:
            assert row.decided_by == "sql", f"{name} should be decided by the SQL checks"


def test_random_edits_get_the_python_reason(spark) -> None:
    lines = fuzz_lines(seed=11, count=1500)
    for contract in (TRANSACTION_EVENT, LABEL_EVENT):
        rows = spark_decisions(spark, lines, contract, "sql")
        decided_in_sql = 0
        for number, raw in enumerate(lines, start=1):
            reason, record = python_decision(raw, contract)
            row = rows[number]
            assert row.reason == reason, f"{raw!r}: python {reason}, spark {row.reason} ({row.detail})"
            if record is not None:
                assert typed_as_python(row, contract) == record, raw
            decided_in_sql += row.decided_by == "sql"
        # Most edits keep the flat shape: the SQL checks, not the fallback, carry the corpus.
        assert decided_in_sql > len(lines) // 2


def test_a_number_too_large_for_a_float_is_not_finite_in_both_validators(spark) -> None:
    # Python's float() of such an int raises OverflowError: the validator reads the token as a
    # double instead (inf), as the SQL cast does, so both say not_finite.
    raw = b'{"transaction_id":1,"event_time":"2018-04-01T00:07:56Z","customer_id":2,"terminal_id":3,"amount":' + b"9" * 400 + b"}"
    for validator in ("sql", "python"):
        row = spark_decisions(spark, [raw], TRANSACTION_EVENT, validator)[1]
        assert row.reason == "not_finite", validator


def test_limit_on_line_size_is_a_parameter(spark) -> None:
    raw = b'{"transaction_id":1,"event_time":"2018-04-01T00:07:56Z","customer_id":2,"terminal_id":3,"amount":1.5}'
    frame = lines_frame(spark, [raw])
    for validator in ("sql", "python"):
        small = validate_lines(frame, TRANSACTION_EVENT, max_bytes=len(raw) - 1, validator=validator).collect()[0]
        exact = validate_lines(frame, TRANSACTION_EVENT, max_bytes=len(raw), validator=validator).collect()[0]
        assert (small.reason, exact.reason) == ("oversized", None), validator


def write_lines(path: Path, lines: list[bytes]) -> Path:
    pq.write_table(
        pa.table({
            "source_file": pa.array(["f"] * len(lines)),
            "line_number": pa.array(range(1, len(lines) + 1), pa.int64()),
            "ingested_at": pa.array([0] * len(lines), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "raw_bytes": pa.array(lines, pa.binary()),
        }),
        path,
    )
    return path


@pytest.mark.classic
def test_classic_spark_decides_and_classifies_like_python_and_sail(spark, tmp_path: Path) -> None:
    """The same code on classic JVM Spark: every corpus reason as Python says (SQL checks and
    the Python fallback); the day's classification (duplicates, conflicts, latest report,
    landing day) as on Sail."""
    from datetime import date

    from cardscore.jobs.ingest.transforms import LABELS, TRANSACTIONS, classify
    from tests.corpus import GOOD_LABEL, GOOD_TX, line
    from tests.support.classic import run_on_classic

    day = date(2018, 4, 1)
    feeds = {
        TRANSACTIONS: [
            line(GOOD_TX, transaction_id=1), line(GOOD_TX, transaction_id=1),  # identical
            line(GOOD_TX, transaction_id=2, amount=1.0), line(GOOD_TX, transaction_id=2, amount=2.0),  # conflict
            line(GOOD_TX, transaction_id=3, event_time="2018-04-02T00:00:00Z"),  # another day
            line(GOOD_TX, transaction_id=4), b"{}",
        ],
        LABELS: [
            line(GOOD_LABEL, transaction_id=1, reported_time="2018-04-01T01:00:00Z"),
            line(GOOD_LABEL, transaction_id=1, reported_time="2018-04-01T02:00:00Z"),  # supersedes
            line(GOOD_LABEL, transaction_id=2, is_fraud=True), line(GOOD_LABEL, transaction_id=2, is_fraud=False),
        ],
    }
    inputs = {"corpus": write_lines(tmp_path / "corpus.parquet", [raw for _, raw, _ in TRANSACTION_LINES])}
    expected_classes = []
    for feed, lines in feeds.items():
        inputs[feed.name] = write_lines(tmp_path / f"{feed.name}.parquet", lines)
        sail = classify(validate_lines(spark.read.parquet(str(inputs[feed.name])), feed.event), feed, day)
        expected_classes += [(feed.name, r.line_number, r.status, r.reason) for r in sail.collect()]

    out = run_on_classic(
        "tests.ingest.classic_functions:classic_checks", inputs, tmp_path / "out.parquet", {"day": day.isoformat()}
    )
    rows = [
        (r.kind, r.name, int(r.line_number), r.status, None if r.reason is None or r.reason != r.reason else r.reason)
        for r in out.itertuples()
    ]
    got = {number: reason for kind, _, number, _, reason in rows if kind == "validate"}
    assert got == {n: expected for n, (_, _, expected) in enumerate(TRANSACTION_LINES, start=1)}
    classes = sorted((name, number, status, reason) for kind, name, number, status, reason in rows if kind == "classify")
    assert classes == sorted(expected_classes)
    assert {status for _, _, status, _ in classes} == {"accepted", "quarantined", "duplicate", "superseded"}
