"""What the notebooks in `notebooks/` share: parameters, settings, display, progress bars.

The same notebook file runs on Databricks and locally as plain Python (`python
notebooks/01_explore_data.py`). Every Databricks-only name (`dbutils`, the notebook's
`display`) is looked up here and only used when it exists:

* `param(name, default)`: on Databricks a text widget (created on first use, so a job's
  `base_parameters` fill it); locally the environment variable `CARDSCORE_NB_<NAME>`;
  else `default`.
* `settings()`: the cardscore settings from the `config` parameter (a YAML file; empty =
  the usual `$CARDSCORE_CONFIG` / `./cardscore.yaml` / defaults; on Databricks the bundle's
  `/Workspace/Shared/cardscore/cardscore.yaml`).
* `display(obj, name)`: Databricks' own display (or `displayHTML`) there; locally a printed
  table, or a PNG / HTML page under `<home>/reports/notebooks/` whose path is printed.

Plus the two summaries the exploration notebook shows (per-day fraud counts, quarantine
reasons), aggregated in the engine so only a few rows reach the driver.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from cardscore.core.config import Settings
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext

ENV_PREFIX = "CARDSCORE_NB_"
# The bundle's `cardscore_config` default (databricks.yml): where a workspace keeps its settings.
DATABRICKS_CONFIG = "/Workspace/Shared/cardscore/cardscore.yaml"
SCENARIOS = {1: "amount > threshold", 2: "compromised terminal", 3: "compromised customer"}

_state: dict[str, Any] = {}


# ------------------------------------------------------------------ Databricks, guarded


def notebook_global(name: str) -> Any | None:
    """A name the running notebook defines (Databricks puts `dbutils`, `display` and `spark`
    in the IPython user namespace), or None outside a notebook."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.user_ns.get(name)


def dbutils() -> Any | None:
    """Databricks' `dbutils`, or None when not running on Databricks."""
    found = notebook_global("dbutils")
    if found is None and os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        try:  # a job's Python task has no notebook namespace; the SDK's runtime module has it
            from databricks.sdk.runtime import dbutils as found  # type: ignore[import-not-found,no-redef]
        except ImportError:
            found = None
    return found


def on_databricks() -> bool:
    return dbutils() is not None


# ------------------------------------------------------------------ parameters and settings


def env_name(name: str) -> str:
    """`train_start` -> `CARDSCORE_NB_TRAIN_START`."""
    return ENV_PREFIX + re.sub(r"[^0-9A-Za-z]+", "_", name).upper()


def param(name: str, default: str = "", label: str | None = None) -> str:
    """A notebook parameter: Databricks widget, else `$CARDSCORE_NB_<NAME>`, else `default`."""
    utils = dbutils()
    if utils is not None:
        utils.widgets.text(name, default, label or name)
        return str(utils.widgets.get(name)).strip()
    return os.environ.get(env_name(name), default).strip()


def day_param(name: str, default: date) -> date:
    """A YYYY-MM-DD parameter; empty means `default`."""
    text = param(name, default.isoformat())
    try:
        return date.fromisoformat(text) if text else default
    except ValueError:
        raise ValueError(f"parameter {name!r}: {text!r} is not a YYYY-MM-DD date") from None


def int_param(name: str, default: int) -> int:
    text = param(name, str(default))
    try:
        return int(text) if text else default
    except ValueError:
        raise ValueError(f"parameter {name!r}: {text!r} is not a whole number") from None


def flag_param(name: str, default: bool) -> bool:
    text = param(name, "true" if default else "false").lower()
    if not text:
        return default
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"parameter {name!r}: {text!r} is not true/false")


def settings(overrides: dict[str, Any] | None = None) -> Settings:
    """The cardscore settings named by the `config` parameter (plus `overrides`)."""
    from cardscore.core.config import load_settings

    path = param("config", DATABRICKS_CONFIG if on_databricks() else "", "settings file (YAML)")
    loaded = load_settings(path or None, overrides=overrides)
    _state["settings"] = loaded
    return loaded


def job_context(settings: Settings) -> JobContext:
    """The engine session (the notebook's own `spark` on Databricks; else `get_spark`: the
    embedded engine locally) and the lake."""
    from cardscore.core.stage import job_context

    return job_context(settings, notebook_global("spark") if on_databricks() else None)


def run_stage(target: Any, ctx: JobContext, days: Sequence[date] = (), **options: Any) -> list[Any]:
    """Run a stage (a `SPEC`) or a composition through the runner, as the jobs and the CLI do;
    returns the reports of its days. A failed stage raises, so the cell fails with its message."""
    from cardscore.core.runner import execute, outcomes_of

    results = execute(target, ctx, days, options)
    failed = next((r.failed for r in results if r.failed), None)
    if failed is not None:
        raise RuntimeError(failed.error)
    return [o.report for o in outcomes_of(results)]


def world_days(settings: Settings) -> tuple[date, date]:
    """First and last day of the simulated world in the landing zone (its manifest), or of the
    configured simulator when nothing was simulated yet."""
    from cardscore.simulator import read_manifest

    manifest = read_manifest(settings.landing_root)
    if manifest is not None:
        params = manifest["parameters"]
        first, n_days = date.fromisoformat(str(params["start_date"])), int(params["n_days"])
    else:
        first, n_days = settings.simulator.start_date, settings.simulator.n_days
    return first, first + timedelta(days=n_days - 1)


# ------------------------------------------------------------------ display and progress


def pictures_dir(settings: Settings | None = None) -> Path:
    """Where pictures go when there is no notebook to show them in."""
    current = settings or _state.get("settings")
    if current is None:
        import tempfile

        return Path(tempfile.gettempdir()) / "cardscore-notebooks"
    return current.home_path / "reports" / "notebooks"


def display(obj: Any, name: str = "", rows: int = 20) -> Path | None:
    """Show a Spark or pandas DataFrame, a matplotlib Figure, a PNG file or a plain value.

    On Databricks the notebook's own `display` renders it; locally tables are printed and a
    figure is saved as `<pictures_dir>/<name>.png` (the path is printed and returned).
    """
    native = notebook_global("display") if on_databricks() else None
    if name:
        print(f"\n== {name.replace('_', ' ')}")
    if _is_figure(obj):
        import matplotlib.pyplot as plt

        path = pictures_dir() / f"{name or 'figure'}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        obj.savefig(path, dpi=110, bbox_inches="tight")
        if native is not None:
            native(obj)
        else:
            print(f"picture: {path}")
        plt.close(obj)
        return path
    if (isinstance(obj, Path) and obj.suffix.lower() == ".html") or (isinstance(obj, str) and obj.lstrip().startswith("<")):
        return _display_html(obj, name)
    if isinstance(obj, (str, Path)) and str(obj).lower().endswith(".png"):
        if notebook_global("get_ipython") is not None or native is not None:
            from IPython.display import Image
            from IPython.display import display as ipython_display

            ipython_display(Image(filename=str(obj)))
        else:
            print(f"picture: {obj}")
        return Path(obj)
    if hasattr(obj, "__rich_console__"):  # a rich Table: the library's summaries for people
        from rich.console import Console

        Console(width=120).print(obj)
        return None
    if native is not None and (_is_spark_frame(obj) or _is_pandas_frame(obj)):
        native(obj)
        return None
    if _is_spark_frame(obj):
        obj = obj.limit(rows).toPandas()
    if _is_pandas_frame(obj):
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(obj.head(rows).to_string())
        return None
    from pprint import pprint

    pprint(obj, width=110, sort_dicts=False)
    return None


def _display_html(page: str | Path, name: str) -> Path | None:
    """An HTML page (a file, or markup such as the monitoring charts): rendered by Databricks'
    `displayHTML`; locally the file's path is printed (markup is saved as `<name>.html` first)."""
    render = notebook_global("displayHTML") if on_databricks() else None
    if render is not None:
        render(page.read_text(encoding="utf-8") if isinstance(page, Path) else page)
        return page if isinstance(page, Path) else None
    if isinstance(page, str):
        path = pictures_dir() / f"{name or 'page'}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<!doctype html><meta charset='utf-8'>{page}", encoding="utf-8")
        page = path
    print(f"page: {page}")
    return page


def _is_figure(obj: Any) -> bool:
    return type(obj).__name__ == "Figure" and hasattr(obj, "savefig")


def _is_spark_frame(obj: Any) -> bool:
    return hasattr(obj, "toPandas") and hasattr(obj, "limit")


def _is_pandas_frame(obj: Any) -> bool:
    return hasattr(obj, "to_string") and hasattr(obj, "head") and hasattr(obj, "columns")


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """progress(phase, done, total) drawing one rich bar per phase when a person watches (a
    terminal or a notebook); a no-op otherwise (jobs, tests)."""
    from rich.console import Console

    from cardscore.core.console import phase_bars

    with phase_bars(Console(), jupyter=True) as progress:
        yield progress


# ------------------------------------------------------------------ exploration summaries


def daily_fraud_summary(lake: Lake, first: date, last: date) -> pd.DataFrame:
    """One row per transaction day in [first, last]: transactions, customers, terminals,
    confirmed frauds (labels known so far), fraud rate and frauds per simulator scenario."""
    from pyspark.sql import functions as F

    from cardscore.core import catalog

    tx = lake.read(catalog.SILVER_TRANSACTIONS).where(F.col("tx_date").between(F.lit(first), F.lit(last)))
    labels = lake.read(catalog.SILVER_LABELS).where(F.col("is_fraud")).select("transaction_id", "fraud_scenario")
    joined = tx.select("transaction_id", "tx_date", "customer_id", "terminal_id").join(
        labels, on="transaction_id", how="left"
    )
    fraud = F.col("fraud_scenario").isNotNull()
    daily = (
        joined.groupBy("tx_date")
        .agg(
            F.count(F.lit(1)).alias("transactions"),
            F.countDistinct("customer_id").alias("customers"),
            F.countDistinct("terminal_id").alias("terminals"),
            F.sum(fraud.cast("long")).alias("frauds"),
            *[F.sum((F.col("fraud_scenario") == k).cast("long")).alias(f"scenario_{k}") for k in SCENARIOS],
        )
        .toPandas()
        .sort_values("tx_date")
        .set_index("tx_date")
    )
    daily = daily.fillna(0).astype("int64")
    daily["fraud_rate"] = daily["frauds"] / daily["transactions"].where(daily["transactions"] > 0)
    return daily


def plot_daily_fraud(daily: pd.DataFrame) -> Any:
    """Transactions per day (bars) and frauds per day by scenario (stacked), one figure."""
    import matplotlib

    if not on_databricks():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    x = np.arange(len(daily))
    top.bar(x, daily["transactions"], color="tab:blue", alpha=0.7)
    top.set_ylabel("transactions")
    rate = top.twinx()
    rate.plot(x, 100 * daily["fraud_rate"], "o-", color="tab:red", markersize=3)
    rate.set_ylabel("fraud rate (%)")
    below = np.zeros(len(daily))
    for k, label in SCENARIOS.items():
        bottom.bar(x, daily[f"scenario_{k}"], bottom=below, label=f"{k}: {label}")
        below = below + daily[f"scenario_{k}"].to_numpy()
    bottom.set_ylabel("confirmed frauds")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.set_xticks(x, [str(d) for d in daily.index], rotation=60, ha="right", fontsize=7)
    top.set_title("transactions, fraud rate and frauds by scenario per day (labels known so far)")
    fig.tight_layout()
    return fig


def plot_score_histogram(counts: pd.DataFrame, title: str) -> Any:
    """Score distribution (log counts), rows with an unknown customer or terminal apart, from
    `cardscore.jobs.score_batch.transforms.score_histogram`'s small table (bin, any_unknown, count)."""
    import matplotlib

    if not on_databricks():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cardscore.jobs.score_batch.report import draw_score_histogram

    fig, ax = plt.subplots(figsize=(8, 4))
    draw_score_histogram(ax, counts, title)
    fig.tight_layout()
    return fig


def plot_stream_vs_batch(stream: dict[int, float], batch: dict[int, float], title: str) -> Any:
    """Each transaction's stream score against its batch score: one skew-free path puts every
    point on the diagonal."""
    import matplotlib

    if not on_databricks():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    common = sorted(stream.keys() & batch.keys())
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="lightgray", linewidth=1)
    ax.scatter([batch[t] for t in common], [stream[t] for t in common], s=8, alpha=0.6)
    ax.set_xlabel("batch score (gold.predictions)")
    ax.set_ylabel("stream score (scores topic)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def quarantine_summary(lake: Lake) -> DataFrame | None:
    """Quarantined records per landing day, feed and reason (None when nothing was ever
    quarantined). Raw payloads stay in the table: this shows counts only."""
    from pyspark.sql import functions as F

    from cardscore.core import catalog

    if not lake.exists(catalog.QUARANTINE):
        return None
    return (
        lake.read(catalog.QUARANTINE)
        .groupBy("landing_date", "source", "reason")
        .agg(F.count(F.lit(1)).alias("records"))
        .orderBy("landing_date", "source", "reason")
    )
