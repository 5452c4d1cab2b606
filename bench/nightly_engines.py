"""The same nightly day on embedded Sail and on the local JVM Spark standalone cluster
(spark-submit with the Delta jars): seconds per stage and rows/s, side by side.

    python -m bench nightly_engines --smoke     # the tests' tiny world, 1 run each (proves it runs)
    python -m bench nightly_engines             # 5,000 customers, 10,000 terminals, 40 days; 3 runs each

**Input.** A simulated world (the handbook's population by default). Its base is built once on
the embedded engine by the real jobs (every landing day but the last ingested, snapshots up to
the last day), then copied into one home per engine, where the model is trained and promoted
on that engine (not timed). **Measured**, per engine, `--runs` times: the nightly of the last
day (`--force`, so every run does all the work; a rerun replaces the same day): the command's
wall time (for the cluster: spark-submit, driver JVM and executors included; for Sail:
`cardscore nightly`, the embedded engine's start included) and each stage's seconds from the
run ledger `ops.pipeline_runs`. Rows per stage: ingest the day's silver transactions,
features and materialize the snapshot rows of the next day (customers + terminals), score and
monitor the day's predictions. Medians of the runs; the ratio is cluster seconds over Sail
seconds (> 1: the cluster is slower). The commands are tests/cluster/commands.py's, the world
is tests/cluster/world.py's.

The cluster: `cardscore.services.spark_cluster.ClassicCluster` with its defaults (a master and
two workers, 2 task slots and 2 GiB each, 1 GiB executors), tied to this process.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import write_result

PACKAGES = ("cardscore", "pyspark", "pysail", "deltalake", "feast", "mlflow", "xgboost", "pandas", "pyarrow")
STAGES = ("ingest", "features", "materialize", "score", "monitor")
# The handbook's population and fraud scenarios (cardscore.core.config.simulator defaults), 40 days.
REAL = {"n_customers": 5000, "n_terminals": 10000, "n_days": 40, "radius": 5.0,
        "compromised_terminals_per_day": 2, "compromised_customers_per_day": 3}


def stage_rows(settings, night) -> dict[str, int]:
    """Rows each stage handled for the night (read back with delta-rs)."""
    from deltalake import DeltaTable

    from cardscore.core import catalog

    def table(name: str):
        layer, short = name.split(".")
        return DeltaTable(f"{settings.lake_root}/{layer}/{short}").to_pandas()

    silver = table(catalog.SILVER_TRANSACTIONS)
    day_rows = int((silver["tx_date"] == night).sum())
    tomorrow = night + timedelta(days=1)
    snapshot = sum(int((table(t)["snapshot_date"] == tomorrow).sum())
                   for t in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES))
    predictions = int((table(settings.scoring.output_table)["tx_date"] == night).sum())
    return {"ingest": day_rows, "features": snapshot, "materialize": snapshot, "score": predictions,
            "monitor": predictions}


def ledger_seconds(settings, night) -> dict[str, float]:
    """Each stage's seconds in the latest nightly run of `night` (the run ledger)."""
    from deltalake import DeltaTable

    from cardscore.core import catalog

    layer, short = catalog.PIPELINE_RUNS.split(".")
    ledger = DeltaTable(f"{settings.lake_root}/{layer}/{short}").to_pandas()
    ledger = ledger[ledger["day"] == night]
    latest = ledger.sort_values("started_at")["run_id"].iloc[-1]
    rows = ledger[ledger["run_id"] == latest]
    if not set(rows["status"]) <= {"succeeded", "skipped"}:  # skipped: --if-needed / --if-enabled steps
        raise RuntimeError(f"the nightly run {latest} did not succeed: {rows[['stage', 'status', 'error']]}")
    return {r.stage: float(r.duration_s) for r in rows.itertuples()}


def measure(engine: str, steps, settings, night, runs: int) -> dict[str, Any]:
    from tests.cluster import commands

    train, promote, nightly = steps
    setup = [commands.run_step(train), commands.run_step(promote)]
    walls, stages = [], []
    for _ in range(runs):
        result = commands.run_step(nightly)
        walls.append(result.seconds)
        stages.append(ledger_seconds(settings, night))
    rows = stage_rows(settings, night)
    per_stage = {}
    for stage in STAGES:
        seconds = [s[stage] for s in stages]
        median = statistics.median(seconds)
        per_stage[stage] = {"median_s": round(median, 3), "seconds": [round(s, 3) for s in seconds],
                            "rows": rows[stage], "rows_per_s": round(rows[stage] / median, 1) if median else None}
    return {
        "engine": engine,
        "train_and_promote_s": round(sum(r.seconds for r in setup), 2),
        "nightly_wall": {"median_s": round(statistics.median(walls), 3), "seconds": [round(w, 3) for w in walls]},
        "stages": per_stage,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the tests' tiny world, one run each")
    parser.add_argument("--runs", type=int, default=None, help="nightly runs per engine (default 3; 1 with --smoke)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    from cardscore.core.config import load_settings
    from cardscore.core.engine import get_spark, stop_spark
    from cardscore.services.spark_cluster import ClassicCluster, ClusterOptions
    from tests.cluster import commands, world

    size = world.TINY if args.smoke else world.WorldSize(**REAL)
    runs = args.runs or (1 if args.smoke else 3)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-nightly-engines-"))
    cluster = ClassicCluster(load_settings(overrides={"home": str(work / "cluster")}),
                             ClusterOptions(master_port=0, webui_port=0, connect_port=0, connect=False))
    try:
        t0 = time.perf_counter()
        base = work / "base"
        world.build_base(get_spark(load_settings(overrides={"home": str(base)})), base, size)
        stop_spark()
        base_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        state = cluster.start(die_with_parent=True)
        cluster_start_s = time.perf_counter() - t0

        results = {}
        for engine in ("sail", "cluster"):
            config = world.clone_base(base, work / engine, size)
            if engine == "sail":
                steps = commands.sail_steps(config, size.night, world.TRAIN_START)
            else:
                steps = commands.spark_submit_steps(cluster.submit_args(state), config, size.night, world.TRAIN_START)
            results[engine] = measure(engine, steps, load_settings(config), size.night, runs)
            print(f"{engine}: nightly {results[engine]['nightly_wall']['median_s']:.1f} s", flush=True)

        sail, jvm = results["sail"], results["cluster"]
        ratios = {stage: round(jvm["stages"][stage]["median_s"] / sail["stages"][stage]["median_s"], 2)
                  for stage in STAGES if sail["stages"][stage]["median_s"]}
        ratios["nightly_wall"] = round(jvm["nightly_wall"]["median_s"] / sail["nightly_wall"]["median_s"], 2)
        path = write_result("nightly_engines", {
            "input": {"smoke": args.smoke, "world": {"n_customers": size.n_customers, "n_terminals": size.n_terminals,
                                                     "n_days": size.n_days, "radius": size.radius},
                      "night": size.night.isoformat(), "runs": runs,
                      "cluster": {"workers": cluster.options.workers, "worker_cores": cluster.options.worker_cores,
                                  "executor_memory": cluster.options.executor_memory,
                                  "jvm_options": cluster.options.jvm_options}},
            "base_build_s": round(base_s, 2),
            "cluster_start_s": round(cluster_start_s, 2),
            "sail": sail,
            "cluster": jvm,
            "ratio_cluster_over_sail": ratios,
            "wall_s": round(time.perf_counter() - started, 1),
        }, packages=PACKAGES, smoke=args.smoke)
        print(f"ratios (cluster / Sail seconds): {ratios}")
        print(f"results: {path}")
    finally:
        cluster.stop()
        stop_spark()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0
