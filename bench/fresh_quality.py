"""Model quality with the fresh features: `python -m bench fresh_quality [--smoke] [--seeds N]`.

Issue 19's model question, measured before any scorer serves such a model: on the handbook's
default world and protocol (train week 2018-07-25..31, 7 days of delay, test week 08-08..14,
card precision@100), does adding the fresh (event-time) features to today's daily-snapshot
features lift the test week, and which of them carry the lift?

The chain, with the real code on the embedded engine: the simulated world written as silver
Delta tables (`silver.transactions`, `silver.labels`, `silver.label_reports`; no landing or
ingest, which `bench train_quality` measures), the snapshot features of the protocol's days
(`jobs.build_features`), the fresh features of the same days (`jobs.fresh_features`, exact
point-in-time values: a transaction at t sees transactions before t and fraud reports made
before t, so labels enter only as reported and nothing leaks), and the job's own training sets
(`jobs.train.stage.build_sets`: the protocol split, Feast's point-in-time join) with the fresh
columns joined on transaction_id.

Every model is cardscore's XGBoost with the configured parameters (`training.model`, the
median over --seeds seeds), on the same train/test rows:

* `snapshot (today's model)`: the 15 features the registered model uses today (the baseline,
  measured in the same run);
* `snapshot + fresh`: those and the 17 fresh features;
* one-change ablations of `snapshot + fresh`: each group of fresh features left out in turn,
  and the snapshot features left out (fresh features with the request-time ones only).

Results: bench/results/fresh_quality.json (bench/results/fresh_quality.smoke.json for --smoke,
a small world whose numbers mean nothing), with the handbook's published table beside them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

if __package__ in (None, ""):  # `python bench/fresh_quality.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import timed, write_result
from bench.fresh import write_silver

METRICS = ("auc_roc", "average_precision", "card_precision_at_k")
REQUEST_TIME = ("tx_amount", "tx_during_weekend", "tx_during_night")
# The fresh features by what they look at; each group is left out in turn.
FRESH_GROUPS = {
    "card activity windows (count, sum, mean over 10 min, 1 h, 24 h)": (
        "card_nb_tx_10min", "card_amount_sum_10min", "card_amount_mean_10min",
        "card_nb_tx_1h", "card_amount_sum_1h", "card_amount_mean_1h",
        "card_nb_tx_24h", "card_amount_sum_24h", "card_amount_mean_24h"),
    "card recency and spread (seconds since previous, terminals in 24 h)": (
        "card_seconds_since_previous_tx", "card_nb_terminals_24h"),
    "card amount against its 30-day mean": ("card_amount_over_mean_30d",),
    "card frauds reported (30 d)": ("card_nb_frauds_reported_30d",),
    "terminal activity (1 h, 24 h)": ("terminal_nb_tx_1h", "terminal_nb_tx_24h"),
    "terminal frauds reported (7 d, 28 d)": ("terminal_nb_frauds_reported_7d", "terminal_nb_frauds_reported_28d"),
}
TARGETS = {"average_precision": 0.75, "card_precision_at_k": 0.35}  # issue 19


def feature_sets(snapshot: Sequence[str], fresh: Sequence[str]) -> dict[str, list[str]]:
    """Every model's feature list, by name: the baseline, all, and the one-change ablations."""
    grouped = {name for group in FRESH_GROUPS.values() for name in group}
    if grouped != set(fresh):
        raise ValueError(f"FRESH_GROUPS must cover the fresh features exactly: {sorted(grouped ^ set(fresh))}")
    both = [*snapshot, *fresh]
    sets = {"snapshot (today's model)": list(snapshot), "snapshot + fresh": both}
    for group, names in FRESH_GROUPS.items():
        sets[f"snapshot + fresh, without {group}"] = [n for n in both if n not in names]
    sets["fresh + request-time only (no snapshot features)"] = [*REQUEST_TIME, *fresh]
    return sets


def fit_and_evaluate(train: pd.DataFrame, test: pd.DataFrame, names: list[str], params: Any,
                     seeds: Sequence[int], k: int) -> dict[str, Any]:
    from cardscore.model.evaluation import evaluate
    from cardscore.model.scoring import predict
    from cardscore.model.training import feature_importance, fit_booster

    runs, seconds, importance = [], [], {}
    for seed in seeds:
        seeded = params.model_copy(update={"seed": seed})
        booster, s = timed(lambda p=seeded: fit_booster(train, names, p))
        runs.append(evaluate(test, predict(booster, test), k).metrics())
        seconds.append(s)
        if not importance:
            gain = feature_importance(booster)
            importance = dict(sorted(gain.items(), key=lambda kv: -kv[1])[:10])
    return {**{m: statistics.median(r[m] for r in runs) for m in METRICS}, "features": len(names),
            "per_seed": runs, "fit_seconds_median": statistics.median(seconds), "top_gain": importance}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fresh_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of each model (median reported)")
    parser.add_argument("--smoke", "--quick", action="store_true",
                        help="a small world (400 customers, 50 days); results go to fresh_quality.smoke.json")
    args = parser.parse_args(argv)

    from cardscore.core.config import load_settings
    from cardscore.core.engine import get_spark, stop_spark
    from cardscore.core.stage import job_context
    from cardscore.features.definitions import MODEL_FEATURES
    from cardscore.features.fresh import FRESH_FEATURE_NAMES
    from cardscore.features.fresh_serving import fresh_rows
    from cardscore.jobs.build_features.stage import build_features_range
    from cardscore.jobs.fresh_features.stage import fresh_features_range
    from cardscore.jobs.train.stage import TrainingParams, build_sets, join_fresh
    from cardscore.model.card import HANDBOOK_TEST_RESULTS
    from cardscore.model.protocol import Protocol, days_needed
    from cardscore.simulator import generate_world

    workdir = Path(tempfile.mkdtemp(prefix="cardscore-bench-fresh-quality-"))
    overrides: dict[str, Any] = {"home": str(workdir / "home"), "logging": {"level": "WARNING"}}
    if args.smoke:
        overrides["simulator"] = {"n_customers": 400, "n_terminals": 800, "n_days": 50}
        overrides["training"] = {"protocol": {"train_start": "2018-04-25"}}
    settings = load_settings(overrides=overrides)
    seeds = list(range(1 if args.smoke else args.seeds))
    protocol = Protocol.from_settings(settings.training.protocol)
    first, end = days_needed([protocol])
    last: date = end - timedelta(days=1)
    stages: dict[str, Any] = {}
    try:
        world, stages["simulate_s"] = timed(lambda: generate_world(settings.simulator))
        print(f"world: {len(world.transactions)} transactions; protocol days {first}..{last}", flush=True)
        spark = get_spark(settings)
        ctx = job_context(settings, spark)
        _, stages["write_silver_s"] = timed(lambda: write_silver(world, ctx.lake, workdir, latest_labels=True))
        _, stages["snapshot_features_s"] = timed(lambda: build_features_range(ctx, first, last))
        _, stages["fresh_features_s"] = timed(lambda: fresh_features_range(ctx, first, last))
        print("features built; training sets", flush=True)
        sets, stages["training_sets_s"] = timed(lambda: build_sets(ctx, TrainingParams(search=False)))
        fresh = fresh_rows(ctx.lake, first, last).toPandas()
        train, test = join_fresh(sets.train, fresh, first, last), join_fresh(sets.test, fresh, first, last)
        stages["sizes"] = sets.sizes

        k = settings.training.protocol.top_k
        models: dict[str, Any] = {}
        for name, names in feature_sets(list(MODEL_FEATURES), list(FRESH_FEATURE_NAMES)).items():
            print(f"fit: {name}", flush=True)
            models[name] = fit_and_evaluate(train, test, names, settings.training.model, seeds, k)
    finally:
        stop_spark()
        shutil.rmtree(workdir, ignore_errors=True)

    baseline, both = models["snapshot (today's model)"], models["snapshot + fresh"]
    summary = {
        "baseline": {m: round(baseline[m], 4) for m in METRICS},
        "snapshot_plus_fresh": {m: round(both[m], 4) for m in METRICS},
        "difference": {m: round(both[m] - baseline[m], 4) for m in METRICS},
        "targets": TARGETS,
        "targets_met": all(both[m] >= v for m, v in TARGETS.items()),
        "beats_every_handbook_row": all(both[m] >= row[m] for row in HANDBOOK_TEST_RESULTS.values() for m in METRICS),
        "ablation_cost_in_average_precision": {
            name.removeprefix("snapshot + fresh, without "): round(both["average_precision"] - r["average_precision"], 4)
            for name, r in models.items() if name.startswith("snapshot + fresh, without ")
        },
    }
    payload = {
        "description": "test-week metrics on the handbook protocol, the same train/test rows for every model",
        "smoke": args.smoke,
        "world": settings.simulator.model_dump(mode="json"),
        "protocol": protocol.describe(),
        "model_params": settings.training.model.model_dump(),
        "seeds": seeds,
        "stages": stages,
        "handbook": HANDBOOK_TEST_RESULTS,
        "models": models,
        "summary": summary,
    }
    path = write_result("fresh_quality", payload, smoke=args.smoke)
    width = max(len(n) for n in models)
    print(f"{'model':<{width}}  AUC ROC     AP  CP@{k}")
    for name, r in models.items():
        print(f"{name:<{width}}  {r['auc_roc']:.4f} {r['average_precision']:.4f} {r['card_precision_at_k']:.4f}")
    for name, r in HANDBOOK_TEST_RESULTS.items():
        print(f"{'handbook ' + name:<{width}}  {r['auc_roc']:.4f} {r['average_precision']:.4f} "
              f"{r['card_precision_at_k']:.4f}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
