"""Contracts: derived schemas agree, the validator's reasons, and evolution rules."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jsonschema
import pytest

from cardscore.schemas import ALL_CONTRACTS, TRANSACTION_EVENT, Field, FieldType, RejectReason
from cardscore.schemas.compat import BreakingChangeError, check_contract, write_snapshot
from cardscore.schemas.timestamps import format_timestamp_us, parse_timestamp_us
from cardscore.schemas.validation import Rejection, validate_bytes

GOOD = {"transaction_id": 7, "event_time": "2018-04-01T00:07:56Z", "customer_id": 1,
        "terminal_id": 2, "amount": 57.16}


def line(**changes) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def test_every_contract_matches_its_committed_snapshot() -> None:
    for contract in ALL_CONTRACTS.values():
        check_contract(contract)


def test_spark_arrow_and_json_schemas_come_from_one_definition() -> None:
    spark_schema = TRANSACTION_EVENT.spark_schema()
    arrow_schema = TRANSACTION_EVENT.arrow_schema()
    json_schema = TRANSACTION_EVENT.json_schema()
    names = TRANSACTION_EVENT.field_names
    assert [f.name for f in spark_schema.fields] == names
    assert arrow_schema.names == names
    assert list(json_schema["properties"]) == names
    assert json_schema["required"] == names
    assert str(arrow_schema.field("event_time").type) == "timestamp[us, tz=UTC]"
    assert spark_schema["event_time"].dataType.simpleString() == "timestamp"


def test_json_schema_and_python_validator_agree_on_good_and_bad_records() -> None:
    schema = TRANSACTION_EVENT.json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    good = json.loads(line())
    assert not list(validator.iter_errors(good))
    assert validate_bytes(line(), TRANSACTION_EVENT) == {**good, "event_time": parse_timestamp_us(GOOD["event_time"])}
    for bad in (line(amount=-1), line(customer_id="1"), line(event_time="2018-04-01 00:07:56"), line(terminal_id=...)):
        assert list(validator.iter_errors(json.loads(bad))), bad
        assert isinstance(validate_bytes(bad, TRANSACTION_EVENT), Rejection), bad


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", RejectReason.MALFORMED_JSON),
        (b"[1, 2]", RejectReason.NOT_AN_OBJECT),
        (line(amount=...), RejectReason.MISSING_FIELD),
        (line(customer_id=None), RejectReason.NULL_FIELD),
        (line(customer_id="12"), RejectReason.WRONG_TYPE),
        (line(customer_id=12.0), RejectReason.WRONG_TYPE),
        (line(amount=True), RejectReason.WRONG_TYPE),
        (b'{"transaction_id": 7, "event_time": "2018-04-01T00:07:56Z", "customer_id": 1, "terminal_id": 2, "amount": NaN}', RejectReason.NOT_FINITE),
        (b'{"transaction_id": 7, "event_time": "2018-04-01T00:07:56Z", "customer_id": 1, "terminal_id": 2, "amount": -Infinity}', RejectReason.NOT_FINITE),
        (line(amount=-0.01), RejectReason.OUT_OF_RANGE),
        (line(amount=1e9), RejectReason.OUT_OF_RANGE),
        (line(event_time="2018-04-01T00:07:56+02:00"), RejectReason.BAD_TIMESTAMP),
        (line(event_time="2018-02-30T00:00:00Z"), RejectReason.BAD_TIMESTAMP),
        (b"\xef\xbb\xbf" + line(), RejectReason.ENCODING),
        (line() + b"\r", RejectReason.ENCODING),
        (b'{"transaction_id": 7, "x": "\xff"}', RejectReason.ENCODING),
        (line(pad="x" * 70_000), RejectReason.OVERSIZED),
    ],
)
def test_each_bad_record_gets_its_reason(raw: bytes, reason: RejectReason) -> None:
    result = validate_bytes(raw, TRANSACTION_EVENT)
    assert isinstance(result, Rejection)
    assert result.reason == reason, result.detail


def test_unknown_fields_are_tolerated_and_integers_are_valid_amounts() -> None:
    result = validate_bytes(line(amount=12, channel="ecom"), TRANSACTION_EVENT)
    assert isinstance(result, dict) and result["amount"] == 12.0 and "channel" not in result


def test_timestamp_wire_format_round_trips() -> None:
    for micros in (0, 1_522_541_276_000_000, 1_522_541_276_123_456):
        assert parse_timestamp_us(format_timestamp_us(micros)) == micros
    assert format_timestamp_us(1_522_541_276_000_000) == "2018-04-01T00:07:56Z"
    assert parse_timestamp_us("2018-04-01T00:07:56.5Z") == 1_522_541_276_500_000
    assert math.isclose(parse_timestamp_us("1970-01-01T00:00:01Z"), 1e6)


def test_timestamp_parsing_fast_path_agrees_with_datetime_on_random_texts() -> None:
    """The per-message parse (day and time-of-day tables) gives what datetime gives, and
    rejects what it rejects (month 13, 31 April, 29 February 2019, hour 24, second 60, year 0),
    the first time a day is seen and once it is remembered."""
    import random
    from datetime import UTC, datetime, timedelta

    def oracle(text: str) -> int | None:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)

    rng = random.Random(7)
    texts = ["2019-02-29T00:00:00Z", "2020-02-29T23:59:59.999999Z", "2018-04-31T00:00:00Z",
             "2018-13-01T00:00:00Z", "2018-04-01T24:00:00Z", "2018-04-01T23:60:00Z",
             "2018-04-01T23:59:60Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.5Z"]
    for _ in range(20_000):
        year = rng.choice([0, 1, 1969, 1970, 2018, 2024, 9999, rng.randint(0, 9999)])
        fraction = rng.choice(["", "." + str(rng.randint(0, 999_999)).zfill(6)[: rng.randint(1, 6)]])
        texts.append(f"{year:04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}T{rng.randint(0, 25):02d}:"
                     f"{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d}{fraction}Z")
    for text in texts:
        expected = oracle(text)
        for _ in range(2):  # the day unseen, then remembered
            if expected is None:
                with pytest.raises(ValueError):
                    parse_timestamp_us(text)
            else:
                assert parse_timestamp_us(text) == expected, text


def test_timestamps_before_year_1000_keep_four_year_digits() -> None:
    """The pattern wants four year digits (glibc's strftime writes '160-04-05'); found by
    schemathesis through the scoring API, whose response echoes the event time."""
    import re

    from cardscore.schemas.contract import TIMESTAMP_PATTERN
    from cardscore.schemas.serialization import event_lines

    for text in ("0160-04-05T13:32:01Z", "0001-01-01T00:00:00.000001Z", "0999-12-31T23:59:59Z"):
        micros = parse_timestamp_us(text)
        assert format_timestamp_us(micros) == text and re.match(TIMESTAMP_PATTERN, text)
        record = {"transaction_id": 1, "event_time": micros, "customer_id": 1, "terminal_id": 1, "amount": 1.0}
        assert event_lines({k: [v] for k, v in record.items()}, TRANSACTION_EVENT)[0] == line_of(record)


def line_of(record: dict) -> bytes:
    from cardscore.schemas.serialization import transaction_event_line

    return transaction_event_line(record)


def evolve(*fields: Field, version: int | None = None):
    """TRANSACTION_EVENT with other fields, as its next version unless `version` says."""
    return dataclasses.replace(TRANSACTION_EVENT, version=version or TRANSACTION_EVENT.version + 1, fields=fields)


def test_additive_change_is_allowed_and_breaking_changes_are_rejected(tmp_path: Path) -> None:
    write_snapshot(TRANSACTION_EVENT, tmp_path)
    base = TRANSACTION_EVENT.fields

    check_contract(evolve(*base, Field("channel", FieldType.STRING, "new", nullable=True)), tmp_path)

    cases = {
        "was removed": evolve(*base[:-1]),
        "changed type": evolve(*base[:-1], Field("amount", FieldType.STRING, "x")),
        "is required": evolve(*base, Field("channel", FieldType.STRING, "new")),
    }
    for message, contract in cases.items():
        with pytest.raises(BreakingChangeError, match=message):
            check_contract(contract, tmp_path)

    with pytest.raises(BreakingChangeError, match="bump the version"):
        check_contract(evolve(*base, Field("channel", FieldType.STRING, "n", nullable=True),
                              version=TRANSACTION_EVENT.version), tmp_path)
