"""Monitoring benchmark: the cost of monitoring one handbook-scale day, next to scoring it.

    python -m bench monitor                      # handbook world (5,000 customers), 3 timed runs
    python -m bench monitor --customers 1000 --runs 3

**Input.** The handbook's world (5,000 customers, 10,000 terminals, seed 0) simulated for 45
days (2018-04-01..05-15, ~9.7k transactions a day); silver written as Delta; the gold
snapshots the protocol and the monitored days need built by the real features job; a model
trained by the real training job (train 04-24..04-30, delay 05-01..05-03, test 05-04..05-07)
and promoted; days D-7 = 05-08 and D = 05-15 scored by the real batch scorer. The training job
saves the reference profile (its test days, scored) after registering the version.

**Measured** (medians of `--runs` runs after one warm-up run, same process, same engine):

* `monitor_day`: `jobs.monitor.monitor_day(ctx, D)` end to end (predictions, reference from
  its MLflow artifacts, day features through Feast in the engine, drift, 30-day delayed-label
  metrics, freshness, Delta write, HTML report, MLflow run), with phase medians;
* `score_day` (the baseline): `jobs.score_batch.score_day(ctx, D)`, the nightly stage before
  monitoring, on the same day and engine;
* `statistics_only`: `drift_rows` on the day's in-memory frame (PSI + KS + null rates of 15
  features and the score), i.e. what the statistics library itself costs;
* `reference_compute`: computing a version's profile from its lineage (what the first
  monitoring of a version registered before profiles existed pays once).

Ratio: monitor_day seconds over score_day seconds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import repeat, timed, write_result

PACKAGES = ("cardscore", "pysail", "deltalake", "feast", "mlflow", "xgboost", "scipy", "matplotlib", "pandas")
FIRST = date(2018, 4, 1)
DAY = date(2018, 5, 15)
JUDGED = date(2018, 5, 8)
PROTOCOL = {"train_start": "2018-04-24", "train_days": 7, "delay_days": 3, "test_days": 4, "top_k": 100}


def build(work: Path, customers: int) -> tuple[Any, dict[str, float]]:
    from cardscore.core import registry
    from cardscore.core.config import load_settings
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.core.engine import get_spark
    from cardscore.core.stage import job_context
    from cardscore.features.store import apply
    from cardscore.jobs.build_features.stage import build_features_range
    from cardscore.jobs.score_batch.stage import score_days
    from cardscore.jobs.train.stage import TrainingParams, train
    from cardscore.simulator import generate_world
    from tests.features.worlds import write_silver

    settings = load_settings(overrides={
        "home": str(work / "home"),
        "training": {"protocol": PROTOCOL, "gate": {"min_auc_roc": 0.5, "min_average_precision": 0.0,
                                                    "min_card_precision_at_k": 0.0}},
    })
    spark = get_spark(settings)
    ctx = job_context(settings, spark)
    seconds: dict[str, float] = {}
    params = SimulatorSettings(n_customers=customers, n_terminals=2 * customers, n_days=(DAY - FIRST).days + 1, seed=0)
    world, seconds["simulate"] = timed(lambda: generate_world(params))
    _, seconds["silver"] = timed(lambda: write_silver(ctx.lake, world.transactions, world.labels))
    _, seconds["features"] = timed(lambda: build_features_range(ctx, date(2018, 4, 24), DAY))
    apply(settings)
    report, seconds["train"] = timed(lambda: train(ctx, TrainingParams(actor="bench", reason="bench")))
    registry.promote(settings, actor="bench", reason="bench", version=report.version)
    _, seconds["score_two_days"] = timed(lambda: score_days(ctx, [JUDGED, DAY]))
    seconds["transactions_on_D"] = float((world.transactions["event_time"].dt.date == DAY).sum())
    return ctx, seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    from cardscore.core import registry
    from cardscore.core.engine import stop_spark
    from cardscore.features.definitions import MODEL_FEATURES
    from cardscore.jobs.monitor.stage import current_frame, monitor_day, predictions_of
    from cardscore.jobs.score_batch.stage import score_day
    from cardscore.monitoring.metrics import drift_rows
    from cardscore.monitoring.reference import compute_reference, reference_of

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    try:
        ctx, setup = build(work, args.customers)
        phases: list[dict[str, float]] = []
        alerts: list[int] = []

        def monitor() -> None:
            report = monitor_day(ctx, DAY)
            phases.append(report.phase_seconds)
            alerts.append(len(report.alerts))

        monitored = repeat(monitor, runs=args.runs)
        scored = repeat(lambda: score_day(ctx, DAY), runs=args.runs)
        ref = registry.find_alias(ctx.settings)
        reference = reference_of(ctx, ref)
        predictions = predictions_of(ctx, DAY)
        frame = current_frame(ctx, DAY, predictions, list(MODEL_FEATURES))
        cfg = ctx.settings.monitoring
        stats_only = repeat(lambda: drift_rows(frame, reference.profile, reference.sample, list(MODEL_FEATURES),
                                               cfg.drift, cfg.drift_exclude), runs=max(args.runs, 5))
        computed, reference_s = timed(lambda: compute_reference(ctx, ref))
        timed_phases = phases[1:] or phases
        payload = {
            "input": {"customers": args.customers, "day": DAY.isoformat(),
                      "transactions_on_D": int(setup.pop("transactions_on_D")),
                      "reference_rows": reference.profile.rows, "reference_window": reference.profile.window},
            "setup_s": {k: round(v, 2) for k, v in setup.items()},
            "monitor_day": {**monitored, "alerts": alerts,
                            "phase_median_s": {p: round(statistics.median(x.get(p, 0.0) for x in timed_phases), 3)
                                               for p in timed_phases[0]}},
            "score_day_baseline": scored,
            "statistics_only": stats_only,
            "reference_compute_s": round(reference_s, 3),
            "reference_compute_rows": computed.profile.rows if computed else None,
            "ratios": {"monitor_over_score": round(monitored["median_s"] / scored["median_s"], 3),
                       "statistics_share_of_monitor": round(stats_only["median_s"] / monitored["median_s"], 4)},
            "wall_s": round(time.perf_counter() - started, 1),
        }
        path = write_result("monitor", payload, PACKAGES)
        print(f"monitor_day median {monitored['median_s']:.2f} s, score_day {scored['median_s']:.2f} s "
              f"(ratio {payload['ratios']['monitor_over_score']}); statistics {stats_only['median_s'] * 1000:.0f} ms; "
              f"results: {path}")
        return 0
    finally:
        stop_spark()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
