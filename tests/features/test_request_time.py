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
