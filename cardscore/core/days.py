"""Days as users and schedulers give them: one parser for every entry point.

`--date D` (YYYY-MM-DD, or `today` / `yesterday` in UTC for schedulers that cannot do date
arithmetic), or `--from A --to B` (inclusive), then `--shift-days N` moves every day by N.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def parse_day(text: str, today: date | None = None) -> date:
    """YYYY-MM-DD, `today` or `yesterday` (UTC)."""
    today = today or datetime.now(UTC).date()
    keywords = {"today": today, "yesterday": today - timedelta(days=1)}
    if text.lower() in keywords:
        return keywords[text.lower()]
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a date like 2018-04-01, 'today' or 'yesterday', got {text!r}") from None


def day_range(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, inclusive."""
    if last < first:
        raise ValueError(f"--to ({last}) is before --from ({first})")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def resolve_days(
    day: str | None, start: str | None, end: str | None, shift_days: int = 0, today: date | None = None
) -> list[date]:
    """The days a dated run processes: `--date`, or `--from/--to`, each shifted by `shift_days`."""
    if day and (start or end):
        raise ValueError("give either --date or --from/--to, not both")
    if day:
        days = [parse_day(day, today)]
    elif start and end:
        days = day_range(parse_day(start, today), parse_day(end, today))
    else:
        raise ValueError("give --date D, or both --from and --to")
    return [d + timedelta(days=shift_days) for d in days]
