"""Stream latency with a shadow model: `python -m bench release_stream [--smoke]`.

The issue's budget: the stream scorer's end-to-end p99 with a shadow version stays within 1.5x
of without. Same world, broker and processor as `python -m bench stream` (its functions: the
Feast SQLite online store of DAY, a 100-tree champion, the real scorer process
`python -m cardscore.streaming`, paced replay producer), on one embedded broker; runs
interleaved: the scorer alone (the baseline), then with a second 100-tree version in shadow
(`cardscore.core.release.start_shadow`: every transaction scored twice, the shadow's score in
each message), then (optionally) with that version as a 25% canary and shadow. Latency of a
transaction = output message timestamp - input message timestamp (ms), after a warm-up.
Medians of --runs runs; ratios to the baseline of the same run. Results:
bench/results/release_stream.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write_result

MODES = ("champion", "shadow", "canary25+shadow")


def register_candidate(settings) -> str:
    """A second 100-tree version (gate passed), registered beside the champion."""
    import mlflow
    import mlflow.xgboost
    import xgboost as xgb

    from cardscore.core import registry
    from cardscore.features.definitions import MODEL_FEATURES

    rng = np.random.default_rng(42)
    x = rng.random((20_000, len(MODEL_FEATURES))) * 50
    y = (x[:, 1] + 10 * x[:, -2] + rng.normal(0, 20, len(x)) > 280).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "nthread": 2},
                        xgb.DMatrix(x, label=y, feature_names=list(MODEL_FEATURES)), num_boost_round=100)
    client = registry.client(settings)
    experiment = client.get_experiment_by_name("bench-stream").experiment_id
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.xgboost.log_model(booster, name="model", model_format="json", pip_requirements=["xgboost"])
    ref = registry.register_version(settings, info.model_uri, run.info.run_id, tags={
        registry.TAG_FEATURE_NAMES: json.dumps(list(MODEL_FEATURES)), registry.TAG_GATE: "passed"})
    return ref.version


def set_mode(settings, mode: str, candidate: str) -> None:
    from cardscore.core import release

    release.clear(settings, actor="bench", reason=f"bench mode {mode}")
    if mode in ("shadow", "canary25+shadow"):
        release.start_shadow(settings, candidate, actor="bench", reason="bench")
    if mode == "canary25+shadow":
        release.set_canary(settings, 25, candidate, actor="bench", reason="bench")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench release_stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="offered events/s of each paced run")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="length of each paced run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated among {', '.join(MODES)}")
    parser.add_argument("--smoke", action="store_true",
                        help="1 run of 2 s at the rate, champion and shadow only; writes release_stream.smoke.json")
    parser.add_argument("--workdir", help="keep the world and logs here (default: a temp folder)")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if args.smoke:
        args.runs, args.rate_seconds, modes = 1, 2.0, ["champion", "shadow"]
    if not modes or modes[0] != "champion" or set(modes) - set(MODES):
        parser.error(f"--modes: champion first, then among {', '.join(MODES)}")

    import yaml

    from bench.stream import (
        _settings,
        build_world,
        one_run,
        running_broker,
        transaction_lines,
        warmed_load,
    )

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-release-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    offline = _settings(home, "127.0.0.1:9")  # the world does not touch the broker
    started = time.perf_counter()
    champion = build_world(offline)
    candidate = register_candidate(offline)
    print(f"world: champion v{champion}, candidate v{candidate} in {time.perf_counter() - started:.1f}s", flush=True)

    def config_for(settings, path: Path) -> Path:
        data = {"home": str(home), "kafka": settings.kafka.model_dump(),
                "streaming": settings.streaming.model_dump(), "logging": {"format": "json"}}
        path.write_text(yaml.safe_dump(data))
        return path

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    next_id = 1_000_000
    with running_broker("embedded", work) as bootstrap, contextlib.ExitStack() as stack:
        # One load producer, created and warmed once (as `bench stream` does): no measured
        # message waits behind a producer's cold start.
        load = warmed_load(home, bootstrap)
        stack.callback(load.close)

        def settings_for(topics: dict[str, str], group: str):
            return _settings(home, bootstrap, topics, group)

        for run in range(args.runs):
            for mode in modes:  # interleaved: a change of load on the machine hits every mode
                set_mode(offline, mode, candidate)
                lines = transaction_lines(int(args.rate * args.rate_seconds), seed=100 + run, first_id=next_id)
                next_id += len(lines) + 1000
                measured = one_run("scorer", settings_for, config_for, work, lines, rate=args.rate, load=load)
                runs[mode].append(measured)
                print(f"run {run + 1} {mode} @ {args.rate:g}/s: {measured}", flush=True)
    set_mode(offline, "champion", candidate)

    def median(mode: str, key: str) -> float | None:
        values = [r[key] for r in runs[mode] if r.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    summary = {m: {k: median(m, k) for k in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms")} for m in modes}
    base = summary["champion"]["latency_p99_ms"]
    ratios = {m: round(summary[m]["latency_p99_ms"] / base, 3) if base and summary[m]["latency_p99_ms"] else None
              for m in modes if m != "champion"}
    path = write_result("release_stream", {
        "parameters": {"rate": args.rate, "rate_seconds": args.rate_seconds, "runs": args.runs, "modes": modes,
                       "broker": "embedded Tansu (loopback)", "models": "2 x XGBoost 100 trees depth 3",
                       "batch_max_messages": 500, "partitions": 4},
        "baseline": "champion alone, same run, interleaved",
        "summary": summary,
        "p99_ratio_to_champion": ratios,
        "budget": "p99 with a shadow <= 1.5x without",
        "runs": runs,
    }, packages=("cardscore", "confluent-kafka", "feast", "mlflow", "xgboost", "numpy"), smoke=args.smoke)
    print(json.dumps({"summary": summary, "p99_ratio_to_champion": ratios}, indent=2))
    print(f"results: {path}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0
