"""A picture of the gold snapshots over days: how many entities are active, and how each
feature's daily mean moves (a jump is a pipeline problem or a real shift, worth a look)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cardscore.core import catalog
from cardscore.features.definitions import CUSTOMER_FEATURES, SNAPSHOT_DATE, TERMINAL_FEATURES

if TYPE_CHECKING:
    from cardscore.core.lake import Lake


def daily_summary(lake: Lake, first: date, last: date) -> pd.DataFrame:
    """One row per snapshot day in [first, last]: active customers and terminals, and the
    mean of every feature over the day's rows (aggregated in the engine)."""
    from pyspark.sql import functions as F

    parts = []
    for table, names, rows in (
        (catalog.CUSTOMER_FEATURES, CUSTOMER_FEATURES, "customers"),
        (catalog.TERMINAL_FEATURES, TERMINAL_FEATURES, "terminals"),
    ):
        if not lake.exists(table):
            raise LookupError(f"{table} does not exist yet: run `cardscore run features` first")
        daily = (
            lake.read(table)
            .where(F.col(SNAPSHOT_DATE).between(F.lit(first), F.lit(last)))
            .groupBy(SNAPSHOT_DATE)
            .agg(F.count(F.lit(1)).alias(rows), *[F.avg(n).alias(n) for n in names])
            .toPandas()
            .set_index(SNAPSHOT_DATE)
        )
        parts.append(daily)
    days = pd.Index(pd.date_range(first, last, freq="D").date, name=SNAPSHOT_DATE)
    summary = pd.concat(parts, axis=1).reindex(days)
    summary[["customers", "terminals"]] = summary[["customers", "terminals"]].fillna(0).astype("int64")
    return summary


def plot_daily_summary(summary: pd.DataFrame, path: str | Path) -> Path:
    """A PNG: active entities per day, then the daily mean of each feature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    features = [*CUSTOMER_FEATURES, *TERMINAL_FEATURES]
    columns = 3
    rows = 1 + -(-len(features) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.6 * rows), squeeze=False)
    x = pd.to_datetime(pd.Series(summary.index))
    top = axes[0]
    top[0].plot(x, summary["customers"], color="tab:blue")
    top[0].set_title("active customers")
    top[1].plot(x, summary["terminals"], color="tab:orange")
    top[1].set_title("active terminals")
    top[2].axis("off")
    for ax, name in zip(axes[1:].ravel(), features, strict=False):
        ax.plot(x, summary[name], color="tab:blue" if name.startswith("customer") else "tab:orange")
        ax.set_title(name.replace("_window", "").replace("_id_", " "), fontsize=9)
    for ax in axes[1:].ravel()[len(features):]:
        ax.axis("off")
    for ax in axes.ravel():
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
    first, last = summary.index.min(), summary.index.max()
    fig.suptitle(f"feature snapshots {first} .. {last}: daily means over active entities")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
