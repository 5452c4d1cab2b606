"""Monitoring runs for people: a table of the days, their alerts and where the report is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cardscore.jobs.monitor.stage import MonitorReport


def summary(reports: Sequence[MonitorReport]) -> Any:
    table = Table(title="monitoring")
    for column in ("day", "model", "predictions", "max feature PSI", "score PSI", "alerts", "seconds"):
        table.add_column(column, justify="right")
    for r in reports:
        psi = "-" if r.max_feature_psi is None else f"{r.max_feature_psi:.3f} ({r.max_feature_psi_feature})"
        table.add_row(str(r.day), f"v{r.model_version}" if r.model_version else "-", str(r.predictions), psi,
                      "-" if r.score_psi is None else f"{r.score_psi:.3f}",
                      f"[red]{len(r.alerts)}[/red]" if r.alerts else "0", f"{r.seconds:.1f}")
    parts: list[Any] = [table]
    for report in reports:
        for alert in report.alerts:
            parts.append(Text.from_markup(f"[red]ALERT[/red] {report.day}: {escape(alert.describe())}"))
    if reports and reports[-1].report_path:
        parts.append(Text(f"report: {reports[-1].report_path}"))
    return Group(*parts)
