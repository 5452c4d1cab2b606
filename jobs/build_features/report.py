"""The feature snapshots a run published, for people."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cardscore.jobs.build_features.stage import FeaturesReport


def summary(reports: Sequence[FeaturesReport]) -> Any:
    days = [r.day for r in reports]
    table = Table(title=f"feature snapshots {min(days)} .. {max(days)}")
    for column in ("day", "customers", "terminals"):
        table.add_column(column, justify="right")
    shown: list[FeaturesReport | None] = list(reports) if len(reports) <= 15 else [*reports[:7], None, *reports[-7:]]
    for report in shown:
        if report is None:
            table.add_row("...", "", "")
        else:
            table.add_row(str(report.day), str(report.customer_rows), str(report.terminal_rows))
    last = reports[-1]
    return Group(table, Text(f"published: gold.customer_features v{last.customer_version}, "
                             f"gold.terminal_features v{last.terminal_version}"))
