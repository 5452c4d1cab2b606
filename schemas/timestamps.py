"""Wire format of timestamps: RFC 3339 UTC with a literal `Z`; microseconds internally.

Digits are ASCII only (`[0-9]`, never `\\d`, which in Python matches any Unicode digit such as
Arabic-Indic ones): a timestamp is the same text for every parser on the way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# Wire format of timestamps in JSON: RFC 3339 in UTC with a literal Z, 0-6 fraction digits.
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PATTERN = re.compile(TIMESTAMP_PATTERN, re.ASCII)


def format_timestamp_us(micros: int) -> str:
    """`2018-04-01T00:07:56Z`, or with 6 fraction digits when there is a fraction."""
    moment = (_EPOCH + timedelta(microseconds=int(micros))).replace(tzinfo=None)
    # isoformat, not strftime: glibc's %Y does not pad years before 1000 to four digits, which
    # the contract's pattern (and the vectorised serialiser) require.
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds") + "Z"


def parse_timestamp_us(text: str) -> int:
    """Microseconds since the epoch; ValueError unless `text` is RFC 3339 UTC with Z."""
    if not isinstance(text, str) or not _PATTERN.match(text):
        raise ValueError("expected RFC 3339 UTC timestamp like 2018-04-01T00:07:56Z")
    # The stream validates a timestamp per message: a day's number and a time of day come from
    # small tables; anything they do not hold (a day not seen yet, hour 24, second 60) takes
    # the datetime() path, which decides and names what is wrong.
    day = _DAY_NUMBERS.get(text[:10])
    minute = _MINUTES_OF_DAY.get(text[11:16])
    second = _SECONDS.get(text[17:19])
    if day is None or minute is None or second is None:
        return _parse_checked(text)
    micros = 0 if len(text) == 20 else int(text[20:-1].ljust(6, "0"))
    return ((day * 1440 + minute) * 60 + second) * 1_000_000 + micros


def _parse_checked(text: str) -> int:
    """`parse_timestamp_us` through datetime(), which rejects what strptime rejected (month 13,
    31 April, hour 24, second 60, year 0); a valid day is remembered for the fast path."""
    # The pattern fixed every field's place: the fields are read by position (strptime was a
    # third of the stream scorer's validation time).
    moment = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                      int(text[17:19]), tzinfo=UTC)
    frac = text[20:-1]
    micros = int(frac.ljust(6, "0")) if frac else 0
    delta = moment - _EPOCH
    if len(_DAY_NUMBERS) >= _MAX_DAYS:  # bounded whatever days arrive; refilled as they recur
        _DAY_NUMBERS.clear()
    _DAY_NUMBERS[text[:10]] = delta.days
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + micros


_MAX_DAYS = 4096  # days remembered (a stream sees a few; eleven years fit)
_DAY_NUMBERS: dict[str, int] = {}  # "2018-04-01" -> days since 1970-01-01 (valid dates only)
_MINUTES_OF_DAY = {f"{h:02d}:{m:02d}": h * 60 + m for h in range(24) for m in range(60)}
_SECONDS = {f"{s:02d}": s for s in range(60)}
