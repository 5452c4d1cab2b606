"""What an ingest run did, for the ledger, the logs and people: counts per layer and reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from cardscore.core.logs import get_logger
from cardscore.jobs.ingest.transforms import FEEDS

if TYPE_CHECKING:
    from rich.table import Table

log = get_logger("jobs.ingest")



@dataclass
class FeedReport:
    """What happened to one feed's lines on one day."""

    feed: str
    files: int = 0
    files_loaded: int = 0  # new files written to bronze by this run
    lines: int = 0  # lines in the day's files (= the day's bronze rows)
    files_withdrawn: int = 0  # files superseded or retracted (jobs/ingest/corrections.py)
    withdrawn: int = 0  # their lines: in bronze, never judged again
    bronze_rows_added: int = 0
    accepted: int = 0  # rows of the day's silver set
    quarantined: int = 0
    duplicates: int = 0  # identical copies dropped
    superseded: int = 0  # earlier same-day reports replaced by a later one (labels)
    reasons: dict[str, int] = field(default_factory=dict)
    decided_by: dict[str, int] = field(default_factory=dict)  # lines decided in sql / python
    silver_changed: bool = False  # whether publishing changed the silver table
    recent_median: float | None = None  # accepted rows per day of the recent days, when known
    restored: int = 0  # labels of withdrawn files replaced by an earlier report, or removed
    gate: dict[str, Any] | None = None

    @property
    def surviving_lines(self) -> int:
        """Lines of the files still in effect: the ones judged and published."""
        return self.lines - self.withdrawn

    @property
    def expected_silver_rows(self) -> int:
        return self.surviving_lines - self.quarantined - self.duplicates - self.superseded


@dataclass
class IngestReport:
    """Counts per layer and reason, table versions before/after and gate results of one day."""

    day: date
    load_id: str
    feeds: dict[str, FeedReport]
    versions_before: dict[str, int | None]
    versions_after: dict[str, int | None] = field(default_factory=dict)
    quarantine_changed: bool = False
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def reason_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for report in self.feeds.values():
            for reason, count in report.reasons.items():
                totals[reason] = totals.get(reason, 0) + count
        return dict(sorted(totals.items()))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out




def log_summary(report: IngestReport, outcome: str) -> None:
    for feed in report.feeds.values():
        log.info(
            "ingest.summary",
            day=report.day.isoformat(),
            feed=feed.feed,
            outcome=outcome,
            load_id=report.load_id,
            files=feed.files,
            files_loaded=feed.files_loaded,
            lines=feed.lines,
            files_withdrawn=feed.files_withdrawn,
            withdrawn=feed.withdrawn,
            bronze_rows_added=feed.bronze_rows_added,
            accepted=feed.accepted,
            quarantined=feed.quarantined,
            duplicates=feed.duplicates,
            superseded=feed.superseded,
            reasons=feed.reasons,
            decided_by=feed.decided_by,
            silver_changed=feed.silver_changed,
            gate_success=None if feed.gate is None else feed.gate["success"],
        )


def summary_table(reports: Sequence[IngestReport]) -> Table:
    """A rich table for people: per feed, lines by fate and quarantined lines by reason."""
    from rich.table import Table

    days = sorted(r.day for r in reports)
    span = days[0].isoformat() if len(days) == 1 else f"{days[0].isoformat()} .. {days[-1].isoformat()}"
    table = Table(title=f"ingest {span} ({len(reports)} day{'s' if len(reports) != 1 else ''})")
    table.add_column("")
    for name in FEEDS:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")

    def row(label: str, value: Callable[[FeedReport], int], style: str = "") -> None:
        counts = [sum(value(r.feeds[n]) for r in reports if n in r.feeds) for n in FEEDS]
        table.add_row(label, *[f"{c:,}" for c in counts], f"{sum(counts):,}", style=style)

    row("files", lambda f: f.files)
    row("  loaded now", lambda f: f.files_loaded)
    row("lines (bronze)", lambda f: f.lines, style="bold")
    row("  added to bronze now", lambda f: f.bronze_rows_added)
    if any(f.withdrawn for r in reports for f in r.feeds.values()):
        row("  of withdrawn files", lambda f: f.withdrawn)
    row("accepted (silver)", lambda f: f.accepted, style="green")
    row("identical duplicates", lambda f: f.duplicates)
    row("superseded reports", lambda f: f.superseded)
    row("quarantined", lambda f: f.quarantined, style="red")
    reasons = sorted({reason for r in reports for f in r.feeds.values() for reason in f.reasons})
    for reason in reasons:
        row(f"  {reason}", lambda f, reason=reason: f.reasons.get(reason, 0))
    seconds = sum(r.seconds for r in reports)
    table.caption = f"{seconds:.1f} s ({seconds / max(len(reports), 1):.2f} s per day)"
    return table
