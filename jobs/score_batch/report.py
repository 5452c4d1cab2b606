"""The batch scorer's reports for people: a summary table and a picture of the scored days."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from cardscore.core.stage import JobContext
    from cardscore.jobs.score_batch.stage import ScoreReport


def summary_table(reports: Sequence[ScoreReport]) -> Table:
    last = reports[-1]
    table = Table(title=f"{last.output_table}: scored by {last.model_name} v{last.model_version}")
    for column in ("day", "transactions", "unknown customers", "unknown terminals", "mean score", "seconds"):
        table.add_column(column, justify="right")
    shown = reports if len(reports) <= 15 else [*reports[:7], None, *reports[-7:]]
    for report in shown:
        if report is None:
            table.add_row("...", "", "", "", "", "")
            continue
        mean = "" if report.mean_score is None else f"{report.mean_score:.4f}"
        table.add_row(
            str(report.day), str(report.rows), str(report.unknown_customers),
            str(report.unknown_terminals), mean, f"{report.seconds:.1f}",
        )
    table.caption = f"table version {last.output_version}; run {last.run_id}"
    return table


def draw_score_histogram(ax: Any, counts: pd.DataFrame, title: str) -> None:
    """Score distribution on `ax` (log counts), rows with an unknown customer or terminal apart,
    from `transforms.score_histogram`'s small table (bin, any_unknown, count)."""
    import numpy as np

    bins = max(int(counts["bin"].max()) + 1 if len(counts) else 1, 50)
    edges = np.arange(bins) / bins
    for unknown, label, color in ((False, "both entities known", "tab:blue"),
                                  (True, "customer or terminal unknown", "tab:orange")):
        part = counts[counts["any_unknown"] == unknown].groupby("bin")["count"].sum()
        heights = np.zeros(bins)
        heights[part.index.to_numpy()] = part.to_numpy()
        ax.bar(edges, heights, width=1 / bins, align="edge", alpha=0.6, label=label, color=color)
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("transactions (log)")
    ax.set_title(title)
    ax.legend()


def plot_scored_days(ctx: JobContext, reports: Sequence[ScoreReport], path: Path) -> None:
    """Score histogram (log counts; rows with an unknown entity apart) and per-day counts.

    The histogram is aggregated in the engine; only its ~100 counts reach this process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from pyspark.sql import functions as F

    from cardscore.jobs.score_batch.transforms import score_histogram

    bins = 50
    days = [r.day for r in reports]
    published = ctx.lake.read(reports[-1].output_table).where(F.col("tx_date").isin(days))
    counts = score_histogram(published, bins).toPandas()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    draw_score_histogram(left, counts, f"score distribution, {days[0]} .. {days[-1]}")
    x = np.arange(len(reports))
    right.bar(x, [r.rows for r in reports], color="tab:blue", alpha=0.6, label="scored")
    right.set_ylabel("transactions")
    right.set_ylim(0, 1.3 * max(r.rows for r in reports))  # room for the legend
    share = right.twinx()
    customers = [r.unknown_customers / max(r.rows, 1) for r in reports]
    terminals = [r.unknown_terminals / max(r.rows, 1) for r in reports]
    share.plot(x, customers, "o-", color="tab:orange", label="unknown customers")
    share.plot(x, terminals, "s-", color="tab:red", label="unknown terminals")
    share.set_ylabel("share of transactions")
    share.set_ylim(0, max(0.05, 1.3 * max(customers + terminals)))
    right.set_xticks(x, [d.isoformat() for d in days], rotation=45, ha="right")
    right.set_title(f"scored by {reports[-1].model_name} v{reports[-1].model_version}")
    share.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

