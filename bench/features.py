"""Feature engineering and feature store benchmark: `python -m bench features [--quick]`.

On the handbook's default world (5,000 customers, 10,000 terminals, 183 days, ~1.75M
transactions, simulated in memory and written as silver Delta tables), it measures:

* the snapshots of every day on the embedded engine: the transformations alone (written as
  Parquet) and the whole job (stage, two GX gates, replaceWhere publish), against two
  baselines on the same data in the same run, and checks that all give the same rows:
  - `naive_per_day_oracle`: the independent pandas implementation of the tests
    (`tests/features/oracle.py`), which re-selects every window of every snapshot day: it
    shows what the engine's linear algorithm buys, NOT what the engine costs;
  - `same_algorithm_numpy`: the engine's own linear algorithm (running totals over a dense
    calendar, lagged differences) in one process with numpy (`bench/linear_baseline.py`),
    writing the same two Parquet outputs: the honest single-machine baseline of the engine;
* Feast: materializing one day (SQLite; Redis when `redis-server` is installed), online
  lookups of 1 and 100 transactions (`features.online.lookup`, p50/p99, plus the raw Feast
  call it wraps), and point-in-time retrieval of a 7-day training set (pandas and Spark).

Medians of --runs runs (the oracle runs --oracle-runs times: it is the slow part). Both
baselines start from the simulated rows in memory; the engine reads them from the silver Delta
tables. Results: bench/results/features.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import REPO_DIR, repeat, timed, write_result

if str(REPO_DIR) not in sys.path:  # the oracle and silver helpers live with the tests
    sys.path.insert(0, str(REPO_DIR))


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000.0
    return {
        "n": len(samples),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def _latency(fn: Callable[[], Any], n: int, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


@contextmanager
def _redis_server(folder: Path) -> Iterator[str | None]:
    """A throw-away redis-server on a free port, or None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    import redis

    from cardscore.services.broker import free_port

    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)  # readiness poll interval
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _write_silver(lake: Any, world: Any, folder: Path) -> dict[str, float]:
    """Silver Delta tables from the world (Parquet in microseconds, then the engine)."""
    from cardscore.core import catalog
    from cardscore.schemas.contracts import SILVER_LABEL, SILVER_TRANSACTION
    from tests.features.worlds import silver_labels, silver_transactions

    spark = lake.spark
    out = {}
    for name, frame, contract, table in (
        ("transactions", silver_transactions(world.transactions), SILVER_TRANSACTION, catalog.SILVER_TRANSACTIONS),
        ("labels", silver_labels(world.labels), SILVER_LABEL, catalog.SILVER_LABELS),
    ):
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, coerce_timestamps="us", index=False)
        df = spark.read.schema(contract.spark_schema()).parquet(str(path))
        _, seconds = timed(lambda df=df, table=table, contract=contract: lake.overwrite(
            df, table, partition_by=contract.partition_by))
        out[name] = round(seconds, 3)
    return out


def _compare(lake: Any, oracle_customers: pd.DataFrame, oracle_terminals: pd.DataFrame) -> dict[str, Any]:
    """The published gold rows against the oracle: same keys, exact counts, float differences."""
    from cardscore.core import catalog
    from cardscore.features.definitions import CUSTOMER_FEATURES, TERMINAL_FEATURES

    result: dict[str, Any] = {}
    for table, oracle, key, names in (
        (catalog.CUSTOMER_FEATURES, oracle_customers, "customer_id", CUSTOMER_FEATURES),
        (catalog.TERMINAL_FEATURES, oracle_terminals, "terminal_id", TERMINAL_FEATURES),
    ):
        gold = lake.read(table).toPandas()
        merged = gold.merge(oracle, on=[key, "snapshot_date"], how="outer", suffixes=("", "_oracle"),
                            indicator=True)
        unmatched = int((merged["_merge"] != "both").sum())
        both = merged[merged["_merge"] == "both"]
        counts_equal = all((both[n] == both[f"{n}_oracle"]).all() for n in names if "_nb_tx_" in n)
        rel = 0.0
        for n in names:
            if "_nb_tx_" in n:
                continue
            a, b = both[n].to_numpy(), both[f"{n}_oracle"].to_numpy()
            denom = np.maximum(np.abs(b), 1e-300)
            rel = max(rel, float(np.max(np.where(a == b, 0.0, np.abs(a - b) / denom))) if len(a) else 0.0)
        result[table] = {"rows": len(gold), "oracle_rows": len(oracle), "unmatched_rows": unmatched,
                         "counts_equal": bool(counts_equal), "max_relative_difference": rel}
    return result


def _compare_frames(pairs: list[tuple[pd.DataFrame, pd.DataFrame, str, tuple[str, ...]]]) -> dict[str, Any]:
    """Two in-memory snapshot tables per entity: unmatched rows, equal counts, float differences."""
    out: dict[str, Any] = {}
    for ours, theirs, key, names in pairs:
        ours = ours.assign(snapshot_date=pd.to_datetime(ours["snapshot_date"]).dt.date)
        merged = ours.merge(theirs, on=[key, "snapshot_date"], how="outer", suffixes=("", "_other"), indicator=True)
        both = merged[merged["_merge"] == "both"]
        rel = 0.0
        for n in names:
            if "_nb_tx_" in n:
                continue
            a, b = both[n].to_numpy(np.float64), both[f"{n}_other"].to_numpy(np.float64)
            if len(a):
                rel = max(rel, float(np.max(np.where(a == b, 0.0, np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))))
        out[key] = {
            "rows": len(ours), "other_rows": len(theirs), "unmatched_rows": int((merged["_merge"] != "both").sum()),
            "counts_equal": bool(all((both[n] == both[f"{n}_other"]).all() for n in names if "_nb_tx_" in n)),
            "max_relative_difference": rel,
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--oracle-runs", type=int, default=1, help="timed runs of the pandas oracle")
    parser.add_argument("--quick", "--smoke", action="store_true",
                        help="a small world (500 customers, 60 days); results go to features.smoke.json")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis online store")
    args = parser.parse_args(argv)

    from cardscore.core.config import load_settings
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.core.engine import get_spark, stop_spark
    from cardscore.core.stage import job_context
    from cardscore.features.definitions import CUSTOMER_FEATURES, MODEL_FEATURES, TERMINAL_FEATURES
    from cardscore.features.online import lookup
    from cardscore.features.retrieval import historical_features, historical_features_spark
    from cardscore.features.store import apply, feature_store, materialize
    from cardscore.features.transform import customer_snapshots, terminal_snapshots
    from cardscore.jobs.build_features.stage import build_features_range
    from cardscore.simulator import generate_world
    from tests.features.oracle import customer_oracle, terminal_oracle

    params = SimulatorSettings(n_customers=500, n_terminals=1000, n_days=60) if args.quick else SimulatorSettings()
    workdir = Path(tempfile.mkdtemp(prefix="cardscore-bench-features-"))
    payload: dict[str, Any] = {"world": {}, "engine": {}, "baseline": {}, "feast": {}}
    try:
        world, seconds = timed(lambda: generate_world(params))
        first = params.start_date
        last = first + timedelta(days=params.n_days - 1)
        days = [first + timedelta(days=i) for i in range(params.n_days)]
        payload["world"] = {
            "customers": params.n_customers, "terminals": params.n_terminals, "days": params.n_days,
            "transactions": len(world.transactions), "labels": len(world.labels),
            "snapshot_days": f"{first}..{last}", "simulate_s": round(seconds, 2),
        }
        print(f"world: {len(world.transactions)} transactions ({seconds:.1f} s)", flush=True)

        settings = load_settings(overrides={"home": str(workdir / "home")})
        spark = get_spark(settings)
        ctx = job_context(settings, spark)
        lake = ctx.lake
        payload["world"]["write_silver_s"] = _write_silver(lake, world, workdir)

        # --- the transformations alone: every snapshot of the world, written as Parquet
        from cardscore.core import catalog

        def transform_only() -> None:
            tx = lake.read(catalog.SILVER_TRANSACTIONS)
            labels = lake.read(catalog.SILVER_LABELS)
            customer_snapshots(tx, first, last).write.mode("overwrite").parquet(str(workdir / "c.parquet"))
            terminal_snapshots(tx, labels, first, last).write.mode("overwrite").parquet(str(workdir / "t.parquet"))

        payload["engine"]["transform_only"] = repeat(transform_only, runs=args.runs, warmup=1)
        print(f"transform only: {payload['engine']['transform_only']['median_s']:.2f} s", flush=True)

        # --- the job: stage, gate, publish; chunks of features.backfill_chunk_days
        job = repeat(lambda: build_features_range(ctx, first, last), runs=args.runs, warmup=0)
        job["passes"] = -(-params.n_days // settings.features.backfill_chunk_days)
        payload["engine"]["job_all_days"] = job
        one_day = repeat(lambda: build_features_range(ctx, last, last), runs=args.runs, warmup=0)
        payload["engine"]["job_one_day"] = one_day
        print(f"job: {job['median_s']:.2f} s for {params.n_days} days; one day {one_day['median_s']:.2f} s", flush=True)

        # --- the baseline: the independent pandas implementation on the same data
        oracle_runs = []
        for _ in range(max(1, args.oracle_runs)):
            started = time.perf_counter()
            oracle_customers = customer_oracle(world.transactions, days)
            oracle_terminals = terminal_oracle(world.transactions, world.labels, days)
            oracle_runs.append(time.perf_counter() - started)
        payload["baseline"] = {"naive_per_day_oracle": {
            "what": "tests/features/oracle.py: every window of every day re-selected with pandas (naive)",
            "runs": len(oracle_runs), "median_s": statistics.median(oracle_runs), "seconds": oracle_runs}}
        payload["baseline"]["agreement"] = _compare(lake, oracle_customers, oracle_terminals)

        # --- the honest baseline: the engine's algorithm with numpy, one process, Parquet out
        from bench.linear_baseline import snapshots_to_parquet

        linear_out: list[Any] = []
        linear = repeat(lambda: linear_out.append(snapshots_to_parquet(
            world.transactions, world.labels, first, last, workdir / "linear")), runs=args.runs, warmup=1)
        linear_customers, linear_terminals = linear_out[-1]
        payload["baseline"]["same_algorithm_numpy"] = {
            "what": "bench/linear_baseline.py: the engine's linear algorithm (running totals, lagged "
                    "differences) with numpy in one process, both tables written as Parquet",
            **linear,
            "agreement_with_oracle": _compare_frames(
                [(linear_customers, oracle_customers, "customer_id", CUSTOMER_FEATURES),
                 (linear_terminals, oracle_terminals, "terminal_id", TERMINAL_FEATURES)]),
        }
        oracle_s = payload["baseline"]["naive_per_day_oracle"]["median_s"]
        engine_s = payload["engine"]["transform_only"]["median_s"]
        payload["ratios"] = {
            "naive_oracle_over_transform_only": round(oracle_s / engine_s, 2),
            "naive_oracle_over_job_all_days": round(oracle_s / job["median_s"], 2),
            # > 1: the engine beats the same algorithm in one numpy process; < 1: it costs more.
            "same_algorithm_numpy_over_transform_only": round(linear["median_s"] / engine_s, 2),
        }
        print(f"naive oracle: {oracle_s:.2f} s; same algorithm in numpy: {linear['median_s']:.2f} s; "
              f"ratios {payload['ratios']}", flush=True)

        # --- Feast: materialize, online lookups, point-in-time retrieval
        tx = world.transactions
        last_day = tx[tx["event_time"].dt.date == last]
        records = [
            {"transaction_id": int(r.transaction_id), "customer_id": int(r.customer_id),
             "terminal_id": int(r.terminal_id), "amount": float(r.amount),
             "event_time": int(r.event_time.value // 1000)}
            for r in last_day.itertuples()
        ]
        rng = np.random.default_rng(0)

        def online(store_settings: Any) -> dict[str, Any]:
            store = apply(store_settings)
            out: dict[str, Any] = {
                "materialize_one_day": repeat(lambda: materialize(store_settings, spark, last, store=store),
                                              runs=args.runs, warmup=0),
            }
            found = lookup(store, records)
            out["lookup_unknown_customers"] = found.unknown_customers
            out["lookup_unknown_terminals"] = found.unknown_terminals
            service = store.get_feature_service("fraud_baseline_v1")
            for size, n in ((1, 500), (100, 200)):
                picks = [[records[i] for i in rng.integers(0, len(records), size)] for _ in range(16)]
                counter = iter(range(10**9))
                out[f"lookup_{size}_rows"] = _latency(lambda p=picks, c=counter: lookup(store, p[next(c) % 16]), n)
                rows = [[{"customer_id": r["customer_id"], "terminal_id": r["terminal_id"],
                          "tx_amount": r["amount"],
                          "tx_datetime": pd.Timestamp(r["event_time"], unit="us", tz="UTC").to_pydatetime()}
                         for r in p] for p in picks]
                counter2 = iter(range(10**9))
                out[f"raw_feast_{size}_rows"] = _latency(
                    lambda r=rows, c=counter2: store.get_online_features(
                        features=service, entity_rows=r[next(c) % 16]).to_dict(), n)
            return out

        payload["feast"]["sqlite"] = online(settings)
        print(f"sqlite: {payload['feast']['sqlite']['lookup_1_rows']}, {payload['feast']['sqlite']['lookup_100_rows']}", flush=True)
        if not args.no_redis:
            with _redis_server(workdir) as redis_url:
                if redis_url is None:
                    payload["feast"]["redis"] = "skipped: redis-server is not installed"
                else:
                    redis_settings = load_settings(overrides={
                        "home": str(workdir / "home"),
                        "feast": {"online_store": "redis", "redis_connection_string": redis_url,
                                  "registry": str(workdir / "redis-registry.db")},
                    })
                    payload["feast"]["redis"] = online(redis_settings)
                    print(f"redis: {payload['feast']['redis']['lookup_1_rows']}", flush=True)

        week = tx[(tx["event_time"].dt.date >= last - timedelta(days=6))]
        entities = week.rename(columns={"event_time": "event_timestamp", "amount": "tx_amount"})[
            ["transaction_id", "customer_id", "terminal_id", "event_timestamp", "tx_amount"]
        ].reset_index(drop=True)
        store = feature_store(settings)
        pandas_run = repeat(lambda: historical_features(settings, spark, entities, store), runs=args.runs, warmup=1)
        entity_sdf = spark.createDataFrame(entities)

        def in_engine() -> None:
            historical_features_spark(settings, spark, entity_sdf, store).write.mode("overwrite").parquet(
                str(workdir / "hist.parquet"))

        spark_run = repeat(in_engine, runs=args.runs, warmup=1)
        payload["feast"]["historical_7_days"] = {
            "entity_rows": len(entities), "features": len(MODEL_FEATURES),
            "pandas": pandas_run, "spark_to_parquet": spark_run,
        }
        print(f"historical ({len(entities)} rows): pandas {pandas_run['median_s']:.2f} s, "
              f"spark {spark_run['median_s']:.2f} s", flush=True)
    finally:
        stop_spark()
        shutil.rmtree(workdir, ignore_errors=True)
    path = write_result("features", payload, smoke=args.quick)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
