"""Release scoring latency: `python -m bench release_latency [--smoke]`.

What a shadow (and a canary) adds to the stream scorer's scoring step: the per-micro-batch
time of `ServingPlan.score` (the one call `StreamScorer.process` times as
`cardscore_stream_scoring_seconds`), on batches of the stream's size
(`streaming.batch_max_messages`, default 500, plus smaller ones: a batch holds what arrived),
with boosters of the training defaults (100 trees of depth 3), one thread per model call as
the scorer runs them (`streaming.model_threads`). Plans, interleaved run by run:

* `champion` (the baseline: what the scorer did before releases),
* `champion+shadow` (every transaction scored twice),
* `canary25+shadow` (a canary on 25% of the cards, the same version as the shadow on the rest:
  scored once on every row),
* `frozen` (the rule-based fallback alone).

Per plan: p50 and p99 of the batch times over --batches batches, medians of --runs runs; the
ratios to `champion` measured in the same run. The issue's budget is on the END-TO-END stream
p99 (broker + online lookup + scoring + produce) with a shadow within 1.5x of without; this
benchmark measures the scoring step alone, of which the shadow is the whole cost, so its ratio
is an upper bound of the end-to-end one. Results: bench/results/release_latency.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.common import write_result

PACKAGES = ("numpy", "xgboost")
PLANS = ("champion", "champion+shadow", "canary25+shadow", "frozen")


def _booster(seed: int) -> Any:
    import xgboost as xgb

    from cardscore.features.definitions import MODEL_FEATURES

    rng = np.random.default_rng(seed)
    x = rng.random((20_000, len(MODEL_FEATURES))) * 50
    y = (x[:, seed % len(MODEL_FEATURES)] + 10 * x[:, -1] + rng.normal(0, 20, len(x)) > 280).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "nthread": 2},
                        xgb.DMatrix(x, label=y, feature_names=list(MODEL_FEATURES)), num_boost_round=100)
    booster.set_param({"nthread": 1})
    return booster


def plans() -> dict[str, Any]:
    from cardscore.core.config.release import FallbackRules
    from cardscore.model.release import ServingModel, ServingPlan

    champion = ServingModel("bench", "1", _booster(1))
    candidate = ServingModel("bench", "2", _booster(2))
    rules = FallbackRules()
    return {
        "champion": ServingPlan(champion, rules=rules),
        "champion+shadow": ServingPlan(champion, shadow=candidate, rules=rules),
        "canary25+shadow": ServingPlan(champion, canary=candidate, share=25, salt="2", shadow=candidate, rules=rules),
        "frozen": ServingPlan(champion, frozen=True, rules=rules),
    }


def batches(n: int, max_size: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Micro-batches of 1..max_size rows (most full, as under load), random features and cards."""
    from cardscore.features.definitions import MODEL_FEATURES

    rng = np.random.default_rng(seed)
    sizes = np.where(rng.random(n) < 0.8, max_size, rng.integers(1, max_size + 1, n))
    return [(rng.random((int(s), len(MODEL_FEATURES))) * 100, rng.integers(0, 5_000, int(s))) for s in sizes]


def one_run(serving: dict[str, Any], work: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Per plan, p50/p99 of the batch times (ms); plans interleaved batch by batch."""
    times: dict[str, list[float]] = {name: [] for name in serving}
    for matrix, cards in work:
        for name, plan in serving.items():
            started = time.perf_counter()
            plan.score(matrix, cards)
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99))}
            for name, t in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench release_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=2000, help="micro-batches per run")
    parser.add_argument("--batch-size", type=int, default=500, help="largest micro-batch (streaming.batch_max_messages)")
    parser.add_argument("--runs", type=int, default=5, help="runs; the medians are reported")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny setting (50 batches, 1 run): proves the benchmark works; writes release_latency.smoke.json")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batches, args.runs = 50, 1
    serving = plans()
    one_run(serving, batches(20, args.batch_size, seed=99))  # warm-up
    runs = [one_run(serving, batches(args.batches, args.batch_size, seed=run)) for run in range(args.runs)]
    results: dict[str, Any] = {}
    for name in PLANS:
        results[name] = {q: statistics.median(r[name][q] for r in runs) for q in ("p50_ms", "p99_ms")}
    base = results["champion"]
    ratios = {name: {f"{q}_ratio": results[name][q] / base[q] for q in ("p50_ms", "p99_ms")}
              for name in PLANS if name != "champion"}
    payload = {
        "setting": {"batches": args.batches, "batch_max_messages": args.batch_size, "runs": args.runs,
                    "trees": 100, "max_depth": 3, "model_threads": 1},
        "baseline": "champion (the scorer's scoring step before releases), same run, interleaved",
        "results": results,
        "ratios_to_champion": ratios,
        "budget": "end-to-end stream p99 with a shadow <= 1.5x without; this ratio (scoring step) bounds it",
        "runs": runs,
    }
    path = write_result("release_latency", payload, packages=PACKAGES, smoke=args.smoke)
    for name in PLANS:
        extra = f"  (x{ratios[name]['p99_ms_ratio']:.2f} p99)" if name in ratios else ""
        print(f"{name:>16}: p50 {results[name]['p50_ms']:.3f} ms, p99 {results[name]['p99_ms']:.3f} ms{extra}")
    print(f"results: {path}")
    return 0
