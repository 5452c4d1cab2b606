"""How cost grows with the world: ingest, features, one nightly and the batch scorer on worlds
of 1x, 4x and 16x the handbook's population (customers and terminals scaled; days fixed).

    python -m bench scale                          # factors 1,4,16 on the embedded engine (long)
    python -m bench scale --factors 1,4            # a subset
    python -m bench scale --remote sc://127.0.0.1:15002   # any Spark Connect engine (e.g. a
                                                   # local standalone cluster's Connect server)
    python -m bench scale --smoke                  # tiny worlds (100 and 200 customers), 1 run

Each world is the simulator's (`SimulatorSettings`: the handbook's 5,000 customers and 10,000
terminals times the factor, every other setting the same) over `--history-days` + 4 days, run
in a process of its own (so one world's memory and engine state do not leak into the next):

1. setup (not measured): simulate, write the landing files, write the first `--history-days`
   days straight to silver (the look-back the features of the measured days need), register
   the Feast repo;
2. **ingest**: the real ingest stage on the three landing days after the history (one run
   each: a day is ingested once), rows = the day's transaction lines;
3. **features**: the real features stage building the next day's snapshot (median of
   `--runs` after a warm-up; idempotent), rows = the silver transactions its look-back reads;
4. setup: a champion trained on a sample of the week before (the model is not what is measured);
5. **nightly**: the real nightly composition for that next day (ingest, features of the day
   after, materialize, score, monitor), once; its stages' seconds are reported too;
6. **score**: the batch scorer on the night's day again (median of `--runs`), rows = the day's
   transactions.

Reported per world and stage: seconds, rows, rows/s and the peak RSS of the process tree
(`bench/memory.py`: on the embedded engine that is engine + driver; with `--remote`, the driver
only); across worlds, the fitted growth per stage: the exponent b of seconds ~ rows^b (1 =
linear) and the time per row at each factor relative to the smallest world (flat = 1). Results:
bench/results/scale.json and the plot bench/results/scale.png (`.smoke.` for --smoke; with
--remote: scale_connect.json and scale_connect.png).

Engine: the embedded Sail engine by default. For the local standalone Spark cluster (classic
JVM Spark, a master and two workers, behind a Connect server with the Delta jars):
`cardscore engine start --classic`, then `--remote sc://127.0.0.1:15003`.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import REPO_DIR, RESULTS_DIR, timed, write_result
from bench.memory import PeakRSS

PACKAGES = (
    "cardscore", "pyspark", "pysail", "deltalake", "feast", "mlflow", "xgboost",
    "great-expectations", "pyarrow", "pandas", "numpy",
)
HANDBOOK_CUSTOMERS, HANDBOOK_TERMINALS = 5_000, 10_000
SMOKE_CUSTOMERS, SMOKE_TERMINALS = 100, 200
STAGES = ("ingest", "features", "nightly", "score")
TRAIN_SAMPLE_ROWS = 50_000


# --------------------------------------------------------------------------- one world (child)


def measure(fn: Callable[[], Any], runs: int, warmup: int) -> tuple[dict[str, Any], list[Any]]:
    """Seconds (median of `runs` after `warmup`) and peak RSS over all of them."""
    results: list[Any] = []
    for _ in range(warmup):
        results.append(fn())
    with PeakRSS() as rss:
        seconds = []
        for _ in range(runs):
            value, took = timed(fn)
            results.append(value)
            seconds.append(took)
    return {
        "median_s": round(statistics.median(seconds), 4),
        "seconds": [round(s, 4) for s in seconds],
        "memory": rss.result(),
    }, results


def with_rate(measured: dict[str, Any], rows: int) -> dict[str, Any]:
    return {
        **measured,
        "rows": rows,
        "rows_per_s": round(rows / measured["median_s"], 1) if measured["median_s"] else None,
        "us_per_row": round(measured["median_s"] / rows * 1e6, 3) if rows else None,
    }


def write_history(ctx: Any, world: Any, before: date, folder: Path) -> dict[str, Any]:
    """Silver tables of the days before `before` (contract schemas; Parquet -> engine -> Delta),
    without going through the driver as rows."""
    from cardscore.core import catalog
    from cardscore.schemas.contracts import SILVER_LABEL, SILVER_TRANSACTION
    from tests.features.worlds import silver_labels, silver_transactions

    tx = world.transactions[world.transactions["event_time"].dt.date < before]
    labels = world.labels[world.labels["reported_time"].dt.date < before]
    counts = {}
    for name, frame, contract, table in (
        ("transactions", silver_transactions(tx), SILVER_TRANSACTION, catalog.SILVER_TRANSACTIONS),
        ("labels", silver_labels(labels), SILVER_LABEL, catalog.SILVER_LABELS),
    ):
        path = folder / f"history-{name}.parquet"
        frame.to_parquet(path, coerce_timestamps="us", index=False)
        df = ctx.spark.read.schema(contract.spark_schema()).parquet(path.as_uri())
        ctx.lake.overwrite(df, table, partition_by=contract.partition_by)
        counts[name] = len(frame)
    return counts


def training_sample(world: Any, day: date, seed: int = 0) -> Any:
    """At most TRAIN_SAMPLE_ROWS transactions of the week before `day` (with their labels)."""
    tx = world.transactions
    days = tx["event_time"].dt.date
    week = tx[(days >= day - timedelta(days=7)) & (days < day)]
    if len(week) > TRAIN_SAMPLE_ROWS:
        week = week.sample(TRAIN_SAMPLE_ROWS, random_state=seed)
    return week.copy()


def train_champion(ctx: Any, sample: Any, day: date) -> str:
    """A champion from the sample (as `bench batch_score` trains): not what is measured."""
    from bench.batch_score import train_champion as fit_and_register

    _, version = fit_and_register(ctx.settings, ctx.spark, sample, day)
    return version


def one_world(factor: int, base: tuple[int, int], history_days: int, runs: int, work: Path,
              remote: str | None) -> dict[str, Any]:
    """Every measurement of one world (run in a child process)."""
    from pyspark.sql import functions as F

    from cardscore.core import catalog
    from cardscore.core.config import load_settings
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.core.engine import get_spark, stop_spark
    from cardscore.core.runner import execute
    from cardscore.core.stage import job_context
    from cardscore.features.store import apply
    from cardscore.jobs.build_features.stage import build_features_range
    from cardscore.jobs.ingest.stage import ingest_day
    from cardscore.jobs.nightly.pipeline import NIGHTLY
    from cardscore.jobs.score_batch.stage import score_day
    from cardscore.simulator import generate_world, write_landing

    params = SimulatorSettings(n_customers=base[0] * factor, n_terminals=base[1] * factor,
                               n_days=history_days + 5)
    overrides: dict[str, Any] = {"home": str(work / "home"), "logging": {"level": "WARNING"}}
    if remote:
        overrides["engine"] = {"mode": "connect", "remote": remote}
    settings = load_settings(environ={}, overrides=overrides)
    out: dict[str, Any] = {"factor": factor, "customers": params.n_customers, "terminals": params.n_terminals,
                           "days": params.n_days, "setup_s": {}}
    first_measured = params.start_date + timedelta(days=history_days)
    ingest_days = [first_measured + timedelta(days=i) for i in range(3)]
    night = first_measured + timedelta(days=3)
    spark = get_spark(settings)
    try:
        ctx = job_context(settings, spark)
        world, out["setup_s"]["simulate"] = timed(lambda: generate_world(params))
        per_day = world.transactions.groupby(world.transactions["event_time"].dt.date).size()
        out["transactions"] = len(world.transactions)
        out["transactions_per_day"] = round(float(per_day.mean()), 1)
        _, out["setup_s"]["write_landing"] = timed(partial(write_landing, world, settings.landing_root))
        out["history_rows"], out["setup_s"]["write_history"] = timed(
            partial(write_history, ctx, world, first_measured, work))
        sample = training_sample(world, night)
        apply(settings)
        print(f"[{factor}x] {len(world.transactions):,} transactions, {per_day.mean():,.0f}/day", flush=True)
        del world  # the stages read the lake: the simulated world must not weigh on their RSS
        gc.collect()

        # ingest: one run per landing day (a day is ingested once)
        seconds, lines = [], []
        with PeakRSS() as rss:
            for day in ingest_days:
                report, took = timed(lambda d=day: ingest_day(ctx, d))
                seconds.append(took)
                lines.append(report.feeds["transactions"].lines)
        out["ingest"] = with_rate({"median_s": round(statistics.median(seconds), 4),
                                   "seconds": [round(s, 4) for s in seconds], "memory": rss.result()},
                                  int(statistics.median(lines)))
        print(f"[{factor}x] ingest {out['ingest']['median_s']} s", flush=True)

        # features: the snapshot of `night` (reads [night-37, night))
        lookback = ctx.lake.read(catalog.SILVER_TRANSACTIONS).where(
            (F.col("tx_date") >= F.lit(night - timedelta(days=37))) & (F.col("tx_date") < F.lit(night))).count()
        measured, _ = measure(lambda: build_features_range(ctx, night, night), runs, warmup=1)
        out["features"] = with_rate(measured, lookback)
        print(f"[{factor}x] features {out['features']['median_s']} s", flush=True)

        out["champion_version"], out["setup_s"]["train_champion"] = timed(lambda: train_champion(ctx, sample, night))

        # one nightly for `night`: ingest, features of night+1, materialize, score, monitor
        with PeakRSS() as rss:
            results, took = timed(lambda: execute(NIGHTLY, ctx, [night]))
        records = [r for result in results for r in result.records]
        failed = [f"{r.stage}: {r.error}" for r in records if r.status == "failed"]
        if failed:
            raise RuntimeError(f"the nightly failed: {failed}")
        day_rows = int(per_day.get(night, 0))
        out["nightly"] = with_rate({"median_s": round(took, 4), "seconds": [round(took, 4)],
                                    "memory": rss.result(),
                                    "stages_s": {r.stage: round(r.seconds, 3) for r in records}}, day_rows)
        print(f"[{factor}x] nightly {took:.2f} s: {out['nightly']['stages_s']}", flush=True)

        # the batch scorer on the night's day (already scored once by the nightly: warm)
        measured, reports = measure(lambda: score_day(ctx, night), runs, warmup=0)
        measured["phase_median_s"] = {
            name: round(statistics.median(r.phase_seconds.get(name, 0.0) for r in reports), 3)
            for name in reports[0].phase_seconds
        }
        out["score"] = with_rate(measured, reports[-1].rows)
        print(f"[{factor}x] score {out['score']['median_s']} s", flush=True)
    finally:
        stop_spark()
    return out


# --------------------------------------------------------------------------- across worlds


def fit_growth(worlds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per stage: exponent b of seconds ~ rows^b (least squares in log-log; 1 = linear), and the
    time per row of each world relative to the smallest world's (flat = 1.0)."""
    import numpy as np

    out: dict[str, Any] = {}
    for stage in STAGES:
        points = [(w[stage]["rows"], w[stage]["median_s"], w["factor"]) for w in worlds
                  if w.get(stage) and w[stage]["rows"] and w[stage]["median_s"]]
        if len(points) < 2:
            continue
        rows = np.array([p[0] for p in points], dtype=float)
        seconds = np.array([p[1] for p in points], dtype=float)
        slope, _ = np.polyfit(np.log(rows), np.log(seconds), 1)
        per_row = seconds / rows
        # seconds = fixed + per_row_marginal * rows: where the flat part of the cost shows.
        marginal, fixed = np.polyfit(rows, seconds, 1)
        out[stage] = {
            "exponent": round(float(slope), 3),
            "us_per_row_by_factor": {str(p[2]): round(float(v * 1e6), 3) for p, v in zip(points, per_row, strict=True)},
            "per_row_relative_to_smallest": {str(p[2]): round(float(v / per_row[0]), 3)
                                             for p, v in zip(points, per_row, strict=True)},
            "linear_fit": {"fixed_s": round(float(fixed), 3), "marginal_us_per_row": round(float(marginal * 1e6), 3)},
            "peak_rss_mb_by_factor": {str(w["factor"]): w[stage]["memory"]["peak_mb"] for w in worlds if w.get(stage)},
        }
    return out


def plot(worlds: list[dict[str, Any]], growth: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for stage in STAGES:
        points = [(w["factor"], w[stage]) for w in worlds if w.get(stage)]
        if not points:
            continue
        factors = [p[0] for p in points]
        label = f"{stage} (b={growth.get(stage, {}).get('exponent', float('nan')):.2f})"
        axes[0].plot([p[1]["rows"] for p in points], [p[1]["median_s"] for p in points], "o-", label=label)
        axes[1].plot(factors, [p[1]["us_per_row"] for p in points], "o-", label=stage)
        axes[2].plot(factors, [p[1]["memory"]["peak_mb"] for p in points], "o-", label=stage)
    axes[0].set(xscale="log", yscale="log", xlabel="rows the stage processes", ylabel="seconds (median)",
                title="time vs rows (b = fitted exponent)")
    axes[1].set(xscale="log", yscale="log", xlabel="world size (x the base world)",
                ylabel="microseconds per row", title="time per row (flat = linear)")
    axes[2].set(xscale="log", xlabel="world size (x the base world)", ylabel="MB",
                title="peak RSS of the process tree")
    factors = sorted({w["factor"] for w in worlds})
    for axis in axes[1:]:
        axis.set_xticks(factors, [f"{f}x" for f in factors])
        axis.minorticks_off()
    for axis in axes:
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_world_in_child(factor: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """`one_world` in a fresh interpreter: its own engine and memory; the JSON comes back."""
    out = work / f"world-{factor}.json"
    if args.resume and out.exists():
        print(f"[{factor}x] measured before: {out}", flush=True)
        return json.loads(out.read_text())
    command = [sys.executable, "-m", "bench", "scale", "--child", str(factor), "--child-out", str(out),
               "--history-days", str(args.history_days), "--runs", str(args.runs),
               "--workdir", str(work / f"world-{factor}")]
    if args.smoke:
        command.append("--smoke")
    if args.remote:
        command += ["--remote", args.remote]
    subprocess.run(command, cwd=REPO_DIR, check=True)
    return json.loads(out.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default=None, help="world sizes, x the handbook's population (default 1,4,16)")
    parser.add_argument("--history-days", type=int, default=37,
                        help="days written straight to silver before the measured days (the longest look-back)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the repeatable stages (median)")
    parser.add_argument("--remote", help="a Spark Connect URL (sc://host:port) instead of the embedded engine")
    parser.add_argument("--workdir", type=Path, help="where the worlds go (default: a temp dir, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--resume", action="store_true",
                        help="with --workdir: a world measured there before (world-<factor>.json) is read, "
                             "not run again (a long run continued, or its worlds run one at a time)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny worlds (100 customers x 1, 2), 1 run, 30 history days: proves it works "
                             "(scale.smoke.json, scale.smoke.png)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resume and args.workdir is None:
        parser.error("--resume needs --workdir (the folder of the earlier run)")
    if args.smoke:
        args.runs, args.history_days = 1, min(args.history_days, 30)
    base = (SMOKE_CUSTOMERS, SMOKE_TERMINALS) if args.smoke else (HANDBOOK_CUSTOMERS, HANDBOOK_TERMINALS)

    if args.child is not None:  # one world, in this process
        from cardscore.core.logs import configure_logging

        configure_logging("WARNING", "json")
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = one_world(args.child, base, args.history_days, args.runs, args.workdir, args.remote)
        args.child_out.write_text(json.dumps(result, indent=2, default=str))
        return 0

    factors = [int(f) for f in (args.factors or ("1,2" if args.smoke else "1,4,16")).split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cardscore-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    worlds = []
    try:
        for factor in sorted(factors):
            print(f"== world {factor}x ({base[0] * factor:,} customers, {base[1] * factor:,} terminals)", flush=True)
            worlds.append(run_world_in_child(factor, args, work))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    growth = fit_growth(worlds)
    # A remote engine's results go beside the embedded engine's, not over them.
    result = "scale_connect" if args.remote else "scale"
    name = f"{result}.smoke" if args.smoke else result
    png = RESULTS_DIR / f"{name}.png"
    engine = f"Spark Connect at {args.remote}" if args.remote else "embedded Sail (in-process)"
    plot(worlds, growth, png, f"cost vs world size on {engine} ({'smoke: ' if args.smoke else ''}"
                               f"{base[0]:,} customers x {', '.join(map(str, factors))})")
    payload = {
        "engine": engine,
        "memory_scope": "driver only (the engine is remote)" if args.remote else "engine + driver (one process tree)",
        "base_world": {"customers": base[0], "terminals": base[1], "factors": factors,
                       "history_days": args.history_days, "runs": args.runs},
        "worlds": worlds,
        "growth": growth,
        "plot": str(png.relative_to(REPO_DIR)),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    path = write_result(result, payload, packages=PACKAGES, smoke=args.smoke)
    print(f"wrote {path} and {png}")
    for stage, fit in growth.items():
        print(f"  {stage:9s} exponent {fit['exponent']:.2f}; time per row vs smallest world "
              f"{fit['per_row_relative_to_smallest']}")
    return 0 if all(math.isfinite(f["exponent"]) for f in growth.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
