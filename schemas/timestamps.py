"""Wire format of timestamps: RFC 3339 UTC with a literal `Z`; microseconds internally."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cardscore.schemas.contract import TIMESTAMP_PATTERN

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PATTERN = re.compile(TIMESTAMP_PATTERN)


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
    head, _, frac = text[:-1].partition(".")
    moment = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    micros = int(frac.ljust(6, "0")) if frac else 0
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + micros
