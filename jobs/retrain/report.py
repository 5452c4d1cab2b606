"""The retraining trigger's decision for people: the window's violations and the verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cardscore.jobs.retrain.stage import TriggerOutcome


def summary(reports: Sequence[Any]) -> Any:
    """The last report: a `TriggerOutcome`, or a failed training's report that wraps one."""
    last = reports[-1]
    return decision_summary(getattr(last, "outcome", last))


def decision_summary(outcome: TriggerOutcome) -> Any:
    decision = outcome.decision
    table = Table(title=f"retraining trigger {decision.day} (k={decision.k} of n={decision.n})")
    table.add_column("day")
    table.add_column("violations")
    for d in decision.window:
        table.add_row(d, escape(", ".join(decision.metrics.get(d, [])) or "-"))
    verdict = "[bold red]FIRE[/bold red]" if decision.fire else "[green]no retraining[/green]"
    parts: list[Any] = [table, Text.from_markup(f"{verdict}: {escape(decision.reason)}")]
    if outcome.training:
        parts.append(Text(f"training: {outcome.training}"))
    if outcome.error:
        parts.append(Text(outcome.error, style="red"))
    return Group(*parts)
