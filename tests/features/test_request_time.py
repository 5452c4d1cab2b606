"""Request-time features: one definition, the same values in every variant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from cardscore.features.definitions import (
    TX_AMOUNT,
    TX_DATETIME,
    TX_DURING_NIGHT,
    TX_DURING_WEEKEND,
)
from cardscore.features.request_time import (
    epoch_micros,
    request_time_arrays,
    request_time_frame,
    request_time_odfv,
    request_time_record,
)


@pytest.mark.parametrize(
    ("moment", "weekend", "night"),
    [
        ("2018-04-07T00:00:00", 1, 1),  # Saturday, midnight
        ("2018-04-07T06:59:59.999999", 1, 1),  # last microsecond of hour 6 is night
        ("2018-04-07T07:00:00", 1, 0),
        ("2018-04-08T23:59:59.999999", 1, 0),  # Sunday, late evening
        ("2018-04-09T00:00:00", 0, 1),  # Monday
        ("2018-04-06T23:59:59", 0, 0),  # Friday
        ("1969-12-27T03:00:00", 1, 1),  # a Saturday before the epoch (floor division)
    ],
)
def test_known_moments(moment: str, weekend: int, night: int) -> None:
    stamp = datetime.fromisoformat(moment).replace(tzinfo=UTC)
    record = request_time_record(12.5, stamp)
    assert record == {TX_AMOUNT: 12.5, TX_DURING_WEEKEND: float(weekend), TX_DURING_NIGHT: float(night)}


def test_variants_agree_with_an_independent_calendar() -> None:
    rng = np.random.default_rng(11)
    micros = rng.integers(1_500_000_000_000_000, 1_560_000_000_000_000, 5000, dtype=np.int64)
    amounts = np.round(rng.gamma(2.0, 40.0, 5000), 2)
    stamps = pd.to_datetime(micros, unit="us", utc=True)
    # The calendar's own view, independent of the integer arithmetic under test.
    weekend = (stamps.weekday >= 5).astype(float)
    night = (stamps.hour <= 6).astype(float)

    arrays = request_time_arrays(amounts, micros)
    np.testing.assert_array_equal(arrays[TX_DURING_WEEKEND], weekend)
    np.testing.assert_array_equal(arrays[TX_DURING_NIGHT], night)
    frame = request_time_frame(pd.DataFrame({"amt": amounts, "us": micros}), "amt", "us")
    np.testing.assert_array_equal(frame[TX_DURING_WEEKEND].to_numpy(), weekend)
    odfv = request_time_odfv({TX_AMOUNT: list(amounts), TX_DATETIME: list(stamps.to_pydatetime())})
    assert odfv == {TX_DURING_WEEKEND: list(weekend), TX_DURING_NIGHT: list(night)}
    for i in range(0, 5000, 97):
        record = request_time_record(amounts[i], int(micros[i]))
        assert (record[TX_DURING_WEEKEND], record[TX_DURING_NIGHT]) == (weekend[i], night[i])


def test_time_inputs_of_every_kind_mean_the_same_instant() -> None:
    micros = 1_523_059_200_123_456  # 2018-04-07T00:00:00.123456Z
    aware = datetime(2018, 4, 7, 0, 0, 0, 123456, tzinfo=UTC)
    paris = aware.astimezone(timezone(timedelta(hours=2)))
    naive = datetime(2018, 4, 7, 0, 0, 0, 123456)  # naive means UTC
    for value in (micros, aware, paris, naive, pd.Timestamp(aware), np.datetime64(naive)):
        assert epoch_micros(value) == micros, value
    with pytest.raises(TypeError):
        epoch_micros(True)
    with pytest.raises(TypeError):
        epoch_micros("2018-04-07T00:00:00Z")


# ------------------------------------------------------------------------------ Spark columns

_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000


def _micros(text: str) -> int:
    """Epoch microseconds of an ISO UTC moment (Python's proleptic Gregorian calendar)."""
    return epoch_micros(datetime.fromisoformat(text).replace(tzinfo=UTC))


EDGE_MOMENTS = [
    "0001-01-01T00:00:00", "0001-01-01T06:59:59.999999", "1582-10-15T00:00:00", "1899-12-31T23:59:59.999999",
    "1900-02-28T23:59:59.999999", "1900-03-01T00:00:00",  # 1900 is not a leap year
    "1904-02-29T06:59:59.999999", "1969-12-27T03:00:00", "1969-12-31T23:59:59.999999", "1970-01-01T00:00:00",
    "1970-01-01T00:00:00.000001", "2000-02-29T00:00:00", "2000-02-29T23:59:59.999999",
    "2016-02-29T07:00:00", "2018-04-06T23:59:59.999999", "2018-04-07T00:00:00",  # Friday -> Saturday
    "2018-04-08T23:59:59.999999", "2018-04-09T00:00:00",  # Sunday -> Monday
    "2018-03-25T00:59:59.999999", "2018-03-25T01:00:00",  # Europe's DST start (UTC has none)
    "2018-10-28T01:00:00", "2018-03-11T07:00:00", "2018-11-04T06:00:00",  # Europe's end, US start/end
    "2100-02-28T23:59:59.999999", "2100-03-01T00:00:00", "9999-12-31T23:59:59.999999",
]


def _sample_micros() -> np.ndarray:
    rng = np.random.default_rng(22)
    lo, hi = _micros("0001-01-01T00:00:00"), _micros("9999-12-31T23:59:59.999999")
    wide = rng.integers(lo, hi, 3000, dtype=np.int64)
    recent = rng.integers(_micros("1960-01-01T00:00:00"), _micros("2040-01-01T00:00:00"), 3000, dtype=np.int64)
    days = rng.integers(-719_000, 2_932_000, 500, dtype=np.int64)  # years 1..9999
    hours = rng.integers(0, 24, 500, dtype=np.int64)
    boundaries = np.concatenate([days * _DAY_US + delta for delta in (-1, 0, 1)]
                                + [days * _DAY_US + hours * _HOUR_US + delta for delta in (-1, 0)])
    edges = np.array([_micros(m) for m in EDGE_MOMENTS], dtype=np.int64)
    return np.concatenate([wide, recent, boundaries, edges])


def _calendar(micros: int) -> tuple[float, float, int]:
    """Weekend flag, night flag and UTC day number from Python's calendar, not the tree."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    day = (moment.date() - datetime(1970, 1, 1).date()).days
    return float(moment.weekday() >= 5), float(moment.hour <= 6), day


@pytest.mark.parametrize("session_zone", ["UTC", "America/Los_Angeles"])
def test_generated_spark_columns_equal_the_python_and_numpy_emissions(spark, session_zone: str) -> None:
    """The Spark expressions generated from REQUEST_TIME_EXPRESSIONS give, for timestamps from
    year 1 to 9999 (midnights, hour 7, weekends, leap days, pre-1970, other zones' DST changes),
    exactly the numpy and Python values and an independent calendar's, whatever the session's
    time zone."""
    from pyspark.sql import functions as F

    from cardscore.features.request_time import request_time_spark_columns, utc_day_number_column

    micros = _sample_micros()
    df = spark.createDataFrame(pd.DataFrame({"i": np.arange(len(micros)), "us": micros}))
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", session_zone)
    try:
        stamped = df.select("i", "us", F.timestamp_micros("us").alias("event_time"))
        epoch_us = F.unix_micros(F.col("event_time"))  # as the scorer reads a timestamp column
        flags = request_time_spark_columns(epoch_us)
        out = stamped.select(
            "i", "us", epoch_us.alias("back"), utc_day_number_column(epoch_us).alias("day"),
            *[flags[n].alias(n) for n in (TX_DURING_WEEKEND, TX_DURING_NIGHT)],
        ).toPandas().sort_values("i").reset_index(drop=True)
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)

    assert (out["back"].to_numpy() == micros).all()  # the timestamp round trip is exact
    arrays = request_time_arrays(np.zeros(len(micros)), micros)
    np.testing.assert_array_equal(out[TX_DURING_WEEKEND].to_numpy(), arrays[TX_DURING_WEEKEND])
    np.testing.assert_array_equal(out[TX_DURING_NIGHT].to_numpy(), arrays[TX_DURING_NIGHT])
    calendar = np.array([_calendar(us) for us in micros])
    np.testing.assert_array_equal(out[TX_DURING_WEEKEND].to_numpy(), calendar[:, 0])
    np.testing.assert_array_equal(out[TX_DURING_NIGHT].to_numpy(), calendar[:, 1])
    np.testing.assert_array_equal(out["day"].to_numpy(), calendar[:, 2].astype(np.int64))
    for i in range(0, len(micros), 53):
        record = request_time_record(0.0, int(micros[i]))
        assert (record[TX_DURING_WEEKEND], record[TX_DURING_NIGHT]) == tuple(calendar[i, :2])
    assert 0 < out[TX_DURING_WEEKEND].mean() < 1 and 0 < out[TX_DURING_NIGHT].mean() < 1


def test_the_expression_language_refuses_what_it_cannot_emit_exactly() -> None:
    from cardscore.features.expressions import Input

    epoch = Input("epoch_us")
    with pytest.raises(ValueError, match="positive"):
        epoch // -7
    with pytest.raises(ValueError, match="positive"):
        epoch % 0
    with pytest.raises(TypeError, match="ints"):
        epoch // 2.5
