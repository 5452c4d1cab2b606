"""Model quality on the default simulated world, against the Fraud Detection Handbook.

    python -m bench.train_quality              # the handbook's world and protocol
    python -m bench.train_quality --no-search  # skip the prequential search (faster)

Runs the whole chain with whatever stages are committed: simulate -> ingest -> features for
the needed days -> `jobs/train/main.py` (MLflow logging, registry, gate). In the same run and on
the same train/test sets it trains the handbook's baselines (logistic regression, decision
tree of depth 2, random forest, XGBoost with the handbook's settings), and it repeats
everything on the handbook's own per-transaction feature windows (bench/handbook_features.py)
to measure what our daily-snapshot features change. Results go to
bench/results/train_quality.json with the handbook's published numbers, machine and versions.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/train_quality.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_DIR, timed, write_result

METRICS = ("auc_roc", "average_precision", "card_precision_at_k")
# Upstream stages this benchmark drives, and the files that must be committed for each.
STAGE_FILES = {
    "ingest": ("jobs/ingest/main.py",),
    "features": ("jobs/build_features/main.py", "features/retrieval.py", "features/definitions.py"),
}
FEATURE_LOOKBACK_DAYS = 37  # terminal windows: 30 days ending 7 days before the snapshot


def committed(paths: Sequence[str]) -> bool:
    """True if every path is tracked by git and unmodified (someone else's work in progress
    is not used unless --use-uncommitted)."""
    for path in paths:
        tracked = subprocess.run(["git", "-C", str(REPO_DIR), "ls-files", "--error-unmatch", path],
                                 capture_output=True, timeout=30)
        if tracked.returncode != 0:
            return False
        changed = subprocess.run(["git", "-C", str(REPO_DIR), "diff", "--quiet", "HEAD", "--", path],
                                 capture_output=True, timeout=30)
        if changed.returncode != 0:
            return False
    return True


# ---------------------------------------------------------------------------- models


def _medians(evaluations: list[Any]) -> dict[str, float]:
    return {m: statistics.median(e.metrics()[m] for e in evaluations) for m in METRICS}


def compare_models(sets: Any, settings: Any, seeds: Sequence[int], search: bool,
                   note: Callable[[str], None]) -> dict[str, Any]:
    """Every model on the same train/test sets: ours (median over seeds), ours with the
    prequential search, XGBoost with the handbook's settings, the handbook's baselines."""
    from cardscore.model.baselines import HANDBOOK_XGBOOST, fit_predict, handbook_baselines
    from cardscore.model.evaluation import evaluate
    from cardscore.model.scoring import predict
    from cardscore.model.training import fit_booster, prequential_search

    k = settings.training.protocol.top_k
    names = sets.feature_names
    out: dict[str, Any] = {}

    note("cardscore XGBoost")
    runs, seconds = [], []
    for seed in seeds:
        params = settings.training.model.model_copy(update={"seed": seed})
        booster, s = timed(lambda p=params: fit_booster(sets.train, names, p))
        runs.append(evaluate(sets.test, predict(booster, sets.test), k))
        seconds.append(s)
    out["cardscore XGBoost"] = {
        **_medians(runs), "seeds": list(seeds), "per_seed": [r.metrics() for r in runs],
        "fit_seconds_median": statistics.median(seconds), "params": settings.training.model.model_dump(),
        "card_precision_per_day": runs[0].card_precision_per_day,
    }

    if search and sets.folds:
        note("prequential search")
        cfg = settings.training.search
        result, s = timed(lambda: prequential_search(
            [(tr, va) for _, tr, va in sets.folds], names, settings.training.model, cfg.grid,
            cfg.select_by, k))
        booster = fit_booster(sets.train, names, result.best.params)
        ev = evaluate(sets.test, predict(booster, sets.test), k)
        out["cardscore XGBoost + prequential search"] = {
            **ev.metrics(), "select_by": cfg.select_by, "search_seconds": s,
            "candidates": len(result.candidates), "folds": len(sets.folds),
            "chosen": result.best.changed(settings.training.model),
            "validation": {m: result.best.mean(m) for m in METRICS},
            "validation_std": {m: result.best.std(m) for m in METRICS},
            # every candidate (grid values and mean/std validation metrics), best first, so
            # the defaults can be checked against the validation folds only
            "candidates_table": result.table()[
                [*cfg.grid, *(c for c in result.table().columns if c.startswith("valid_"))]
            ].to_dict(orient="records"),
        }

    note("XGBoost, handbook settings")
    booster, s = timed(lambda: fit_booster(sets.train, names, HANDBOOK_XGBOOST))
    out["XGBoost, handbook settings"] = {
        **evaluate(sets.test, predict(booster, sets.test), k).metrics(), "fit_seconds": s,
        "params": HANDBOOK_XGBOOST.model_dump(),
    }
    # What moves the result, one change at a time (test week, for the explanation only: the
    # defaults are chosen on the validation folds by the search above).
    defaults = settings.training.model
    variants = {
        "ablation: defaults with 256 bins": defaults.model_copy(update={"max_bin": 256}),
        "ablation: defaults with depth 3, eta 0.1": defaults.model_copy(
            update={"max_depth": 3, "learning_rate": 0.1}),
        "ablation: handbook settings with 4096 bins": HANDBOOK_XGBOOST.model_copy(update={"max_bin": 4096}),
    }
    for name, params in variants.items():
        note(name)
        booster, s = timed(lambda p=params: fit_booster(sets.train, names, p))
        out[name] = {**evaluate(sets.test, predict(booster, sets.test), k).metrics(), "fit_seconds": s,
                     "changed": {f: v for f, v in params.model_dump().items() if v != getattr(defaults, f)}}
    for name, model in handbook_baselines(seed=0, n_jobs=settings.training.model.n_jobs).items():
        note(name)
        scores, s = timed(lambda m=model: fit_predict(m, sets.train, sets.test, names))
        out[name] = {**evaluate(sets.test, scores, k).metrics(), "fit_seconds": s}
    return out


# ---------------------------------------------------------------------------- the chain


def simulate(settings: Any) -> Any:
    from cardscore.simulator import generate_world

    return generate_world(settings.simulator)


def world_inputs(world: Any) -> Any:
    """The simulator's transactions and label feed as the job's inputs (fraud_scenario dropped)."""
    from cardscore.jobs.train.stage import TrainingInputs

    tx = world.transactions[["transaction_id", "customer_id", "terminal_id", "event_time", "amount"]]
    labels = world.labels[["transaction_id", "is_fraud", "reported_time"]]
    return TrainingInputs(tx.reset_index(drop=True), labels.reset_index(drop=True), {})


def reference_sets(world: Any, protocol: Any, folds: list[Any]) -> Any:
    """Train/test sets with the handbook's per-transaction features, split exactly as the job."""
    import pandas as pd

    from bench.handbook_features import FEATURE_NAMES, handbook_features
    from cardscore.jobs.train.stage import assemble_sets
    from cardscore.model.protocol import days_needed, midnight

    inputs = world_inputs(world)
    first, end = days_needed([protocol, *folds])
    tx = inputs.transactions
    window = tx[(tx["event_time"] >= pd.Timestamp(midnight(first - timedelta(days=FEATURE_LOOKBACK_DAYS))))
                & (tx["event_time"] < pd.Timestamp(midnight(end)))]
    features = handbook_features(window, inputs.labels.loc[inputs.labels["is_fraud"], "transaction_id"])
    return assemble_sets(inputs, protocol, folds, lambda _entities: features, FEATURE_NAMES,
                         "handbook_reference_features")


def run_pipeline(settings: Any, world: Any, first: date, end: date, search: bool, use_uncommitted: bool,
                 stages: dict[str, Any], note: Callable[[str], None]) -> tuple[Any, Any]:
    """simulate -> landing -> ingest -> features -> train, as far as the committed stages go.

    Returns (training sets, training report) or (None, None) when a stage is missing.
    """
    from cardscore.core.engine import get_spark
    from cardscore.core.stage import job_context
    from cardscore.simulator import write_landing

    for stage, files in STAGE_FILES.items():
        if not (use_uncommitted or committed(files)):
            stages[stage] = {"status": "skipped: not committed yet", "files": list(files)}
            return None, None
    note("landing")
    _, stages["landing"] = timed(lambda: write_landing(world, settings.landing_root))
    spark = get_spark(settings)
    ctx = job_context(settings, spark)
    feature_first = first - timedelta(days=FEATURE_LOOKBACK_DAYS)
    # Labels arrive up to label_delay_max_days after their transaction.
    label_tail = timedelta(days=int(settings.simulator.label_delay_max_days) + 1)
    ingest_days = [feature_first + timedelta(days=i) for i in range((end + label_tail - feature_first).days)]
    ingest_days = [d for d in ingest_days if d < world.params.start_date + timedelta(days=world.params.n_days)]

    from cardscore.jobs.ingest.stage import ingest_day

    def ingest(ctx, days):
        return [ingest_day(ctx, day) for day in days]

    note("ingest")
    _, seconds = timed(lambda: ingest(ctx, ingest_days))
    stages["ingest"] = {"status": "ran", "days": len(ingest_days), "seconds": seconds}

    from cardscore.jobs.build_features.stage import build_features_range

    note("features")
    _, seconds = timed(lambda: build_features_range(ctx, first, end - timedelta(days=1)))
    stages["features"] = {"status": "ran", "days": (end - first).days, "seconds": seconds}

    from cardscore.jobs.train.stage import GateRejected, TrainingParams, build_sets, train_on_sets

    note("train (job)")
    params = TrainingParams(search=search, actor="bench", reason="bench/train_quality")
    sets, seconds = timed(lambda: build_sets(ctx, params))
    stages["training_sets"] = {"seconds": seconds, **sets.sizes}
    try:
        report, seconds = timed(lambda: train_on_sets(settings, sets, params))
        gate = "passed"
    except GateRejected as exc:
        report, seconds, gate = exc.report, float("nan"), "rejected"
    stages["train"] = {"status": "ran", "seconds": seconds, "gate": gate, "version": report.version,
                       "run_id": report.run_id}
    return sets, report


# ---------------------------------------------------------------------------- main


def headline(models: dict[str, Any], handbook: dict[str, dict[str, float]]) -> dict[str, Any]:
    best = {m: max(row[m] for row in handbook.values()) for m in METRICS}
    xgb_row = handbook["XGBoost"]
    out = {}
    for name, result in models.items():
        out[name] = {
            **{m: round(result[m], 4) for m in METRICS},
            "vs_handbook_xgboost_ratio": {m: round(result[m] / xgb_row[m], 4) for m in METRICS},
            "vs_best_handbook_ratio": {m: round(result[m] / best[m], 4) for m in METRICS},
            "vs_best_handbook_diff": {m: round(result[m] - best[m], 4) for m in METRICS},
            "meets_handbook_xgboost": all(result[m] >= xgb_row[m] for m in METRICS),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO_DIR / ".cardscore" / "bench" / "train_quality",
                        help="workspace (reset at the start unless --keep)")
    parser.add_argument("--keep", action="store_true", help="do not reset the workspace")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of our model (median reported)")
    parser.add_argument("--search", action=argparse.BooleanOptionalAction, default=True,
                        help="run the prequential search (default: on)")
    parser.add_argument("--use-uncommitted", action="store_true",
                        help="also drive upstream stages that are present but not committed")
    parser.add_argument("--customers", type=int, help="smaller world for a smoke run (not comparable)")
    parser.add_argument("--terminals", type=int)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from cardscore.core.config import load_settings
    from cardscore.core.engine import stop_spark
    from cardscore.model.card import HANDBOOK_TEST_RESULTS
    from cardscore.model.protocol import Protocol, days_needed, validation_folds

    console = Console(stderr=True)
    if args.home.exists() and not args.keep:
        shutil.rmtree(args.home)
    simulator = {k: v for k, v in {"n_customers": args.customers, "n_terminals": args.terminals}.items() if v}
    settings = load_settings(overrides={"home": str(args.home), "simulator": simulator,
                                        "logging": {"level": "WARNING"}})
    started = time.perf_counter()
    status = console.status("starting")
    status.start()

    def note(what: str) -> None:
        status.update(f"[bold]{what}[/bold] ({time.perf_counter() - started:.0f}s)")

    stages: dict[str, Any] = {}
    results: dict[str, Any] = {}
    try:
        note("simulate")
        world, seconds = timed(lambda: simulate(settings))
        stages["simulate"] = {"seconds": seconds, "transactions": len(world.transactions),
                              "fraud_rate": float(world.transactions["tx_fraud"].mean())}
        cfg = settings.training
        protocol = Protocol.from_settings(cfg.protocol)
        folds = validation_folds(protocol, cfg.search.n_folds, cfg.search.fold_shift_days) if args.search else []
        first, end = days_needed([protocol, *folds])
        seeds = list(range(args.seeds))

        note("handbook reference features")
        ref, seconds = timed(lambda: reference_sets(world, protocol, folds))
        stages["reference_features"] = {"seconds": seconds, **ref.sizes}
        results["handbook_reference_features"] = compare_models(ref, settings, seeds, args.search, note)

        sets, report = run_pipeline(settings, world, first, end, args.search, args.use_uncommitted, stages, note)
        if sets is not None:
            results["pipeline_features"] = compare_models(sets, settings, seeds, args.search, note)
            results["pipeline_features"]["jobs/train/main.py (registered run)"] = {
                **report.test.metrics(), "version": report.version, "params": report.params,
                "train": report.train.metrics(),
            }
    finally:
        status.stop()
        stop_spark()

    main_set = "pipeline_features" if "pipeline_features" in results else "handbook_reference_features"
    summary = {name: headline(models, HANDBOOK_TEST_RESULTS) for name, models in results.items()}
    payload = {
        "description": "test-week metrics on the handbook protocol; baselines trained in the same run "
                       "on the same train/test sets",
        "world": settings.simulator.model_dump(mode="json"),
        "protocol": protocol.describe(),
        "validation_folds": [f.describe() for f in folds],
        "headline_feature_set": main_set,
        "stages": stages,
        "handbook": HANDBOOK_TEST_RESULTS,
        "results": results,
        "summary": summary,
        "seconds_total": time.perf_counter() - started,
    }
    path = write_result("train_quality", payload)

    for set_name, models in results.items():
        table = Table(title=f"test week {protocol.test_start}..{protocol.test_end - timedelta(days=1)}: {set_name}")
        for col in ("model", "AUC ROC", "AP", f"CP@{cfg.protocol.top_k}"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for name, r in models.items():
            table.add_row(name, *(f"{r[m]:.3f}" for m in METRICS))
        for name, r in HANDBOOK_TEST_RESULTS.items():
            table.add_row(f"[dim]handbook {name}[/dim]", *(f"[dim]{r[m]:.3f}[/dim]" for m in METRICS))
        console.print(table)
    for stage, info in stages.items():
        console.print(f"{stage}: {info}")
    console.print(f"results: {path} ({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
