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
    # The pattern fixed every field's place: the fields are read by position, and datetime()
    # rejects what strptime rejected (month 13, 31 April, hour 24, second 60, year 0); strptime
    # was a third of the stream scorer's validation time.
    moment = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                      int(text[17:19]), tzinfo=UTC)
    frac = text[20:-1]
    micros = int(frac.ljust(6, "0")) if frac else 0
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + micros
