"""Fresh-feature backfill benchmark: `python -m bench fresh [--smoke] [--runs N] [--oracle-samples K]`.

On the handbook's default world (5,000 customers, 10,000 terminals, 183 days, ~1.75M
transactions, simulated in memory; its fraud reports 1 hour to 7 days late), written as silver
Delta tables (`silver.transactions`, `silver.label_reports`), it measures the exact
point-in-time fresh features (features/README.md, "Fresh features") of EVERY transaction:

* engine, transform alone: `features.fresh_spark.fresh_features` over the whole world, written
  as Parquet (what a training set's backfill costs);
* engine, the stage's backfill: `jobs.fresh_features.stage.fresh_features_range` over every
  day (passes of `features.backfill_chunk_days`: look-back read, Great Expectations gate,
  replaceWhere publish into `gold.fresh_features`);

against, in the same run and on the same rows:

* `online_state_replay`: the online path's own implementation (`features.fresh_state.FreshState`,
  one process, pure Python), fed the world in time order (a transaction queried, then added;
  reports added at their report time) - the same algorithm family as a rebuild of the streaming
  state, and the single-process baseline of the engine;
* `naive_pandas_oracle`: the tests' independent oracle (`tests/features/fresh_oracle.py`, written
  from the README), on a seeded sample of transactions (each with its card's and terminal's
  history); quadratic, so its whole-world time is extrapolated from the sample and labelled so.

Agreement: the engine's value of every feature equals the online state's on every transaction
and the oracle's on every sampled one, exactly (counts are integers, sums integer micro-units:
no tolerance). Results: bench/results/fresh.json (medians of --runs runs).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import REPO_DIR, repeat, timed, write_result
from bench.memory import PeakRSS

if str(REPO_DIR) not in sys.path:  # the oracle and silver helpers live with the tests
    sys.path.insert(0, str(REPO_DIR))


def _us(times: pd.Series) -> np.ndarray:
    return pd.to_datetime(times, utc=True).dt.as_unit("us").astype("int64").to_numpy()


def _history(world: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The world as integer-microsecond frames (the oracle's and the replay's input)."""
    tx = world.transactions
    transactions = pd.DataFrame({
        "transaction_id": tx["transaction_id"].to_numpy(np.int64),
        "customer_id": tx["customer_id"].to_numpy(np.int64),
        "terminal_id": tx["terminal_id"].to_numpy(np.int64),
        "amount": tx["amount"].to_numpy(np.float64),
        "us": _us(tx["event_time"]),
    })
    labels = pd.DataFrame({
        "transaction_id": world.labels["transaction_id"].to_numpy(np.int64),
        "is_fraud": world.labels["is_fraud"].to_numpy(bool),
        "reported_us": _us(world.labels["reported_time"]),
    })
    return transactions, labels


def write_silver(world: Any, lake: Any, workdir: Path, latest_labels: bool = False) -> None:
    """The world as silver Delta tables, the way ingest leaves them: `silver.transactions` and
    `silver.label_reports` (every report); with `latest_labels` also `silver.labels` (the
    latest report per transaction). Written through Parquet: a million rows of
    createDataFrame would cost more than the tables."""
    from cardscore.core import catalog
    from cardscore.schemas.contracts import SILVER_LABEL, SILVER_LABEL_REPORT, SILVER_TRANSACTION
    from tests.features.worlds import silver_labels, silver_transactions

    reports = silver_labels(world.labels)
    tables = [(silver_transactions(world.transactions), SILVER_TRANSACTION, catalog.SILVER_TRANSACTIONS),
              (reports, SILVER_LABEL_REPORT, catalog.SILVER_LABEL_REPORTS)]
    if latest_labels:
        latest = (reports.sort_values(["transaction_id", "reported_time"], kind="stable")
                  .drop_duplicates("transaction_id", keep="last"))
        tables.append((latest, SILVER_LABEL, catalog.SILVER_LABELS))
    for frame, contract, table in tables:
        path = workdir / f"{table}.parquet"
        frame[contract.field_names].to_parquet(path, coerce_timestamps="us", index=False)
        lake.overwrite(lake.spark.read.schema(contract.spark_schema()).parquet(str(path)), table,
                       partition_by=contract.partition_by)


def online_state_replay(transactions: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Every transaction's features from `FreshState`, fed in time order (reports at their
    report time, before the transactions of the same microsecond: a report at t is not seen
    at t either way, `features_at` counts r < t), with its default eviction; returns (features
    by transaction id, the largest number of entries its card and terminal histories held)."""
    from cardscore.features.fresh import FRESH_FEATURE_NAMES
    from cardscore.features.fresh_state import FreshState

    state = FreshState()
    order = transactions.sort_values(["us", "transaction_id"], kind="stable")
    reports = labels.sort_values("reported_us", kind="stable")
    report_rows = list(reports.itertuples(index=False))
    next_report, held = 0, 0
    columns: dict[str, list] = {name: [] for name in FRESH_FEATURE_NAMES}
    for i, r in enumerate(order.itertuples(index=False)):
        while next_report < len(report_rows) and report_rows[next_report].reported_us <= r.us:
            report = report_rows[next_report]
            state.add_label(int(report.transaction_id), bool(report.is_fraud), int(report.reported_us))
            next_report += 1
        values = state.features_at(r.customer_id, r.terminal_id, r.us, r.amount)
        for name in FRESH_FEATURE_NAMES:
            columns[name].append(values[name])
        state.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, r.us, r.amount)
        if i % 100_000 == 0:
            held = max(held, state.size())
    return pd.DataFrame(columns, index=order["transaction_id"].to_numpy()), max(held, state.size())


def oracle_sample(transactions: pd.DataFrame, labels: pd.DataFrame, ids: np.ndarray) -> tuple[pd.DataFrame, float]:
    """The naive oracle's values of the transactions `ids`: each computed on its card's and its
    terminal's history (all its features can see) and that history's reports; (values, seconds)."""
    from tests.features.fresh_oracle import oracle

    rows, seconds = [], 0.0
    by_id = transactions.set_index("transaction_id")
    for tx_id in ids:
        card, terminal = by_id.at[tx_id, "customer_id"], by_id.at[tx_id, "terminal_id"]
        history = transactions[(transactions["customer_id"] == card) | (transactions["terminal_id"] == terminal)]
        reports = labels[labels["transaction_id"].isin(history["transaction_id"])]
        started = time.perf_counter()
        values = oracle(history, reports).set_index("transaction_id").loc[[tx_id]]
        seconds += time.perf_counter() - started
        rows.append(values)
    return pd.concat(rows), seconds


def agreement(engine: pd.DataFrame, other: pd.DataFrame, names: tuple[str, ...]) -> dict[str, Any]:
    """Per feature, the share of `other`'s transactions where the engine's value is exactly
    equal, and the largest absolute difference."""
    mine = engine.loc[other.index]
    per_feature = {}
    for name in names:
        a, b = mine[name].to_numpy(np.float64), other[name].to_numpy(np.float64)
        per_feature[name] = {"equal_share": float(np.mean(a == b)) if len(a) else 1.0,
                             "max_abs_difference": float(np.max(np.abs(a - b))) if len(a) else 0.0}
    return {"transactions": len(other), "all_equal": all(v["equal_share"] == 1.0 for v in per_feature.values()),
            "per_feature": per_feature}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fresh", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each engine measurement (median)")
    parser.add_argument("--oracle-samples", type=int, default=200,
                        help="transactions the naive oracle computes (seeded sample)")
    parser.add_argument("--smoke", "--quick", action="store_true",
                        help="a small world (300 customers, 45 days); results go to fresh.smoke.json")
    args = parser.parse_args(argv)

    from cardscore.core import catalog
    from cardscore.core.config import load_settings
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.core.engine import get_spark, stop_spark
    from cardscore.core.stage import job_context
    from cardscore.features.fresh import FRESH_FEATURE_NAMES
    from cardscore.features.fresh_spark import fresh_features
    from cardscore.jobs.fresh_features.stage import fresh_features_range
    from cardscore.simulator import generate_world

    params = (SimulatorSettings(n_customers=300, n_terminals=600, n_days=45) if args.smoke
              else SimulatorSettings())
    runs = 1 if args.smoke else args.runs
    samples = min(args.oracle_samples, 30) if args.smoke else args.oracle_samples
    workdir = Path(tempfile.mkdtemp(prefix="cardscore-bench-fresh-"))
    payload: dict[str, Any] = {"parameters": {"runs": runs, "oracle_samples": samples}}
    try:
        world, simulate_s = timed(lambda: generate_world(params))
        first = params.start_date
        last = first + timedelta(days=params.n_days - 1)
        payload["world"] = {"customers": params.n_customers, "terminals": params.n_terminals,
                            "days": params.n_days, "transactions": len(world.transactions),
                            "label_reports": len(world.labels), "simulate_s": round(simulate_s, 2)}
        print(f"world: {len(world.transactions)} transactions, {len(world.labels)} reports", flush=True)

        settings = load_settings(overrides={"home": str(workdir / "home")})
        spark = get_spark(settings)
        ctx = job_context(settings, spark)
        lake = ctx.lake

        payload["world"]["write_silver_s"] = round(timed(lambda: write_silver(world, lake, workdir))[1], 2)

        engine_out = workdir / "engine.parquet"

        def transform_only() -> None:
            tx = lake.read(catalog.SILVER_TRANSACTIONS).select(
                "transaction_id", "customer_id", "terminal_id", "amount", "event_time")
            reports = lake.read(catalog.SILVER_LABEL_REPORTS).select("transaction_id", "is_fraud", "reported_time")
            fresh_features(tx, reports).write.mode("overwrite").parquet(str(engine_out))

        with PeakRSS() as rss:
            transform = repeat(transform_only, runs=runs, warmup=0 if args.smoke else 1)
        transform["memory"] = rss.result()  # the embedded engine runs in this process: all of it
        rows = len(world.transactions)
        transform["rows_per_s"] = round(rows / transform["median_s"], 1)
        payload["engine"] = {"transform_only": transform}
        print(f"engine transform: {transform['median_s']:.2f} s", flush=True)

        def progress(done: int, total: int) -> None:
            print(f"  stage backfill: {done}/{total} days", flush=True)

        stage = repeat(lambda: fresh_features_range(ctx, first, last, progress=progress), runs=runs, warmup=0)
        stage["passes"] = -(-params.n_days // settings.features.backfill_chunk_days)
        stage["rows_per_s"] = round(rows / stage["median_s"], 1)
        published = lake.read(catalog.FRESH_FEATURES).count()
        stage["published_rows"] = published
        payload["engine"]["stage_backfill"] = stage
        print(f"stage backfill: {stage['median_s']:.2f} s, {published} rows", flush=True)

        engine = pd.read_parquet(engine_out).set_index("transaction_id")
        transactions, labels = _history(world)

        # One run: pure Python over every transaction, minutes on the full world.
        (online, held), seconds = timed(lambda: online_state_replay(transactions, labels))
        replay_runs = [seconds]
        replay = {"what": "features.fresh_state.FreshState fed the world in time order, one process",
                  "runs": len(replay_runs), "median_s": statistics.median(replay_runs), "seconds": replay_runs,
                  "rows_per_s": round(rows / statistics.median(replay_runs), 1), "state_peak_entries": held,
                  "agreement": agreement(engine, online, FRESH_FEATURE_NAMES)}
        payload["baseline"] = {"online_state_replay": replay}
        print(f"online state replay: {replay['median_s']:.2f} s", flush=True)

        rng = np.random.default_rng(19)
        ids = rng.choice(transactions["transaction_id"].to_numpy(), size=min(samples, rows), replace=False)
        sampled, oracle_s = oracle_sample(transactions, labels, ids)
        per_tx = oracle_s / len(ids)
        payload["baseline"]["naive_pandas_oracle"] = {
            "what": "tests/features/fresh_oracle.py on a seeded sample (each transaction with its "
                    "card's and terminal's whole history); the world's time is extrapolated",
            "transactions": len(ids), "seconds": round(oracle_s, 3), "s_per_transaction": per_tx,
            "extrapolated_world_s": round(per_tx * rows, 1),
            "agreement": agreement(engine, sampled, FRESH_FEATURE_NAMES)}

        payload["summary"] = {
            "transactions": rows,
            "engine_transform_s": round(transform["median_s"], 2),
            "engine_stage_backfill_s": round(stage["median_s"], 2),
            "online_state_replay_s": round(replay["median_s"], 2),
            "online_state_replay_over_engine_transform": round(replay["median_s"] / transform["median_s"], 2),
            "naive_oracle_extrapolated_over_engine_transform":
                round(per_tx * rows / transform["median_s"], 1),
            "engine_equals_online_state": replay["agreement"]["all_equal"],
            "engine_equals_oracle_on_sample": payload["baseline"]["naive_pandas_oracle"]["agreement"]["all_equal"],
            "fraud_features_nonzero_share": {
                name: round(float((engine[name] > 0).mean()), 4)
                for name in ("card_nb_frauds_reported_30d", "terminal_nb_frauds_reported_28d")},
        }
        stop_spark()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = write_result("fresh", payload, smoke=args.smoke)
    summary = payload["summary"]
    print(f"engine equals the online state on all {summary['transactions']} transactions: "
          f"{summary['engine_equals_online_state']}; equals the oracle on {samples}: "
          f"{summary['engine_equals_oracle_on_sample']}")
    print(f"results: {path}")
    return 0 if summary["engine_equals_online_state"] and summary["engine_equals_oracle_on_sample"] else 1


if __name__ == "__main__":
    sys.exit(main())
