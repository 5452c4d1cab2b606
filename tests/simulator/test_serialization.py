"""schemas.serialization: one byte format for landing lines and Kafka messages."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from cardscore.schemas.contracts import LABEL_EVENT, TRANSACTION_EVENT
from cardscore.schemas.serialization import (
    label_event_line,
    label_event_lines,
    transaction_event_line,
    transaction_event_lines,
)
from cardscore.schemas.timestamps import format_timestamp_us
from cardscore.schemas.validation import validate_bytes
from cardscore.simulator import World


def test_transaction_line_exact_bytes() -> None:
    record = {
        "transaction_id": 12,
        "event_time": 1522541276 * 1_000_000,
        "customer_id": 596,
        "terminal_id": 3156,
        "amount": 57.16,
    }
    expected = b'{"transaction_id":12,"event_time":"2018-04-01T00:07:56Z","customer_id":596,"terminal_id":3156,"amount":57.16}'
    assert transaction_event_line(record) == expected
    # an aware datetime is the same instant; an integer amount is still written as a double
    same = {**record, "event_time": datetime(2018, 4, 1, 0, 7, 56, tzinfo=UTC)}
    assert transaction_event_line(same) == expected
    assert transaction_event_line({**record, "amount": 57}).endswith(b'"amount":57.0}')


def test_label_line_exact_bytes_and_null_scenario() -> None:
    record = {
        "transaction_id": 7,
        "is_fraud": True,
        "reported_time": 1522545000_250000,
        "fraud_scenario": 2,
    }
    line = label_event_line(record)
    assert (
        line
        == b'{"transaction_id":7,"is_fraud":true,"reported_time":"2018-04-01T01:10:00.250000Z","fraud_scenario":2}'
    )
    assert label_event_line({**record, "fraud_scenario": None}).endswith(b'"fraud_scenario":null}')
    assert label_event_line({k: v for k, v in record.items() if k != "fraud_scenario"}).endswith(
        b"null}"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"amount": float("nan")},
        {"amount": float("inf")},
        {"customer_id": 1.5},
        {"customer_id": True},
        {"event_time": datetime(2018, 4, 1)},  # naive: ambiguous
        {"terminal_id": None},
    ],
)
def test_values_json_cannot_carry_are_refused(bad: dict) -> None:
    record = {
        "transaction_id": 1,
        "event_time": 0,
        "customer_id": 1,
        "terminal_id": 1,
        "amount": 1.0,
    }
    with pytest.raises(ValueError):
        transaction_event_line({**record, **bad})


def test_vectorised_equals_per_record_and_round_trips(small_world: World) -> None:
    tx = small_world.transactions
    lines = transaction_event_lines(tx)
    assert len(lines) == len(tx)
    for line, row in zip(lines, tx.to_dict("records"), strict=True):
        typed = validate_bytes(line, TRANSACTION_EVENT)
        assert typed, typed
        assert transaction_event_line(typed) == line
        assert typed["transaction_id"] == row["transaction_id"] and typed["amount"] == row["amount"]
    labels = small_world.labels
    label_lines = label_event_lines(labels)
    for line in label_lines:
        typed = validate_bytes(line, LABEL_EVENT)
        assert typed and label_event_line(typed) == line


def test_vectorised_timestamps_fractions_units_and_nulls() -> None:
    micros = np.array(
        [0, 1, 999_999, 1_000_000, 1522541276_000000, 1522541276_123400, 253402300799_999999]
    )
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(len(micros)),
            "is_fraud": [True, False, True, True, False, True, True],
            "reported_time": micros,
            "fraud_scenario": pd.array([1, None, 3, 0, 2, None, 99], dtype="Int32"),
        }
    )
    expected = [
        label_event_line(r)
        for r in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]
    assert label_event_lines(frame) == expected
    assert b'"2018-04-01T00:07:56.123400Z"' in expected[5]
    assert all(
        format_timestamp_us(int(m)).encode() in line
        for m, line in zip(micros, expected, strict=True)
    )
    # datetime64 columns, naive (UTC) or aware, in any unit, give the same bytes
    naive_us = pd.Series(micros.astype("datetime64[us]"))
    for times in (
        naive_us,
        naive_us.dt.tz_localize("UTC").dt.tz_convert("Europe/Brussels"),
        naive_us.iloc[:-1].astype("datetime64[ns]").dt.tz_localize("UTC"),  # ns stops in 2262
    ):
        n = len(times)
        assert label_event_lines(frame.iloc[:n].assign(reported_time=times)) == expected[:n]


def test_vectorised_refuses_nulls_in_required_fields() -> None:
    frame = pd.DataFrame(
        {
            "transaction_id": [1],
            "event_time": [0],
            "customer_id": [1],
            "terminal_id": [None],
            "amount": [1.0],
        }
    )
    with pytest.raises(ValueError, match="terminal_id"):
        transaction_event_lines(frame)
    with pytest.raises(ValueError, match="amount"):
        transaction_event_lines(frame.assign(terminal_id=[1], amount=[float("nan")]))
