"""The training run for people: metrics beside the handbook's, and the gate's checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cardscore.jobs.train.stage import TrainingReport


def metrics_table(report: TrainingReport) -> Table:
    from cardscore.model.card import HANDBOOK_TEST_RESULTS

    k = report.test.k
    table = Table(title=f"{report.model_name} v{report.version or '-'} (run {report.run_id[:8]})")
    table.add_column("metric")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    table.add_column("handbook XGBoost", justify="right")
    table.add_column("best handbook", justify="right")
    names = {"auc_roc": "AUC ROC", "average_precision": "average precision",
             "card_precision_at_k": f"card precision@{k}"}
    for metric, label in names.items():
        best = max(row[metric] for row in HANDBOOK_TEST_RESULTS.values())
        table.add_row(label, f"{report.train.metrics()[metric]:.3f}", f"[bold]{report.test.metrics()[metric]:.3f}[/bold]",
                      f"{HANDBOOK_TEST_RESULTS['XGBoost'][metric]:.3f}", f"{best:.3f}")
    return table


def training_summary(report: TrainingReport) -> Any:
    """The metrics table, the gate's verdict and checks, and what to do next."""
    parts: list[Any] = [metrics_table(report)]
    if report.gate is not None:
        if report.gate.passed:
            parts.append(Text(f"{report.model_name} v{report.version}: passed the gate, alias challenger",
                              style="green"))
        else:
            parts.append(Text(f"{report.model_name} v{report.version}: rejected by the validation gate",
                              style="red"))
        for check in report.gate.checks:
            mark = Text("  ok   ", style="green") if check.passed else Text("  FAIL ", style="red")
            parts.append(Text.assemble(mark, check.detail))
        if report.gate.passed:
            parts.append(Text("promote it with: cardscore promote --reason '...'"))
    return Group(*parts)


def summary(reports: Sequence[TrainingReport]) -> Any:
    return training_summary(reports[-1])
