"""Fresh features, online against offline: `python -m bench fresh_consistency [--rate 1000] [--smoke]`.

Issue 19's consistency check, Chronon style. A simulated world at the handbook's density
(5,000 cards, 10,000 terminals; --days days) has its days before the last one in the lake
(silver Delta tables). On a broker of its own (--broker embedded: Tansu; kafka: Apache Kafka
from `make jars`), each run:

1. starts `cardscore fresh-stream card`, `cardscore fresh-stream terminal` (each loads its
   partitions' 30 days from the lake) and the stream scorer with `streaming.fresh_features` on,
   serving a champion of the `snapshot_fresh_v1` set, all as processes;
2. replays the last day, transactions and label reports in time order as `cardscore replay`
   orders them, open loop at --rate messages/s;
3. reads every score message: the fresh values the scorer served, logged with the score, and
   the as-of times of the stored rows it read (score_event v3).

Then the day goes into the lake and the offline job computes the same features
(`cardscore run fresh_features --date D`, the Spark transform through the stage, its
gate and `gold.fresh_features`). For every scored transaction and every feature: the share
exactly equal, the largest difference, and of the differences the share **explained by
processing lag**: the stored row the value came from was written when the pipeline's
event-time clock was still before the transaction's time (`fresh_*_as_of < event_time`). The
card's own window features must be 100% equal (the scorer holds them itself). The scores: the
streamed score against the same booster on the offline values (and the snapshot features the
online store serves: the same for both, the lake has no snapshot tables here), bit for bit.

A replayed day is compressed: at 1,000 messages/s the day's ~10k transactions take ~10 s, so
one second of processing lag is hours of event time; the result names the compression.
Results: bench/results/fresh_consistency.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.common import REPO_DIR, write_result
from bench.fresh_stream import (
    PARTITIONS,
    _config,
    _free_port,
    _settings,
    committed,
    load_producer,
    paced_send,
    silver_until,
    start_cardscore,
    start_step,
    stop_all,
    streamed_world,
    wait_for,
    world_arguments,
    world_parameters,
)
from bench.stream import read_topic, running_broker

if str(REPO_DIR) not in sys.path:  # the silver and model helpers live with the tests
    sys.path.insert(0, str(REPO_DIR))


def _scorer_config(settings, path: Path, group: str) -> Path:
    data = yaml.safe_load(_config(settings, path).read_text())
    data["streaming"] = {"group_id": group, "fresh_features": True, "metrics_port": 0,
                         "batch_max_wait_ms": 5}
    path.write_text(yaml.safe_dump(data))
    return path


def explained(served: np.ndarray, offline: np.ndarray, as_of: np.ndarray, event_us: np.ndarray,
              lag_explains: bool = True) -> dict[str, Any]:
    """Per feature column: equal share, largest difference, and the differences the as-of
    times explain: the pipeline behind the transaction (`as_of < event_time`: its events before
    t were not all stored yet; not for the card's own windows, which the scorer holds), or
    ahead of it by more than the allowed lateness (`as_of > event_time + lateness`: the stored
    row no longer holds the oldest events of the transaction's windows)."""
    from cardscore.features.fresh import ALLOWED_LATENESS_US

    equal = served == offline
    unequal = ~equal
    behind = (as_of < event_us) if lag_explains else np.zeros(len(as_of), dtype=bool)  # NOT_STORED (-1) too
    ahead = as_of > event_us + ALLOWED_LATENESS_US
    return {
        "equal_share": round(float(equal.mean()), 6),
        "different": int(unequal.sum()),
        "max_abs_difference": float(np.max(np.abs(served - offline))) if len(served) else 0.0,
        "explained_pipeline_behind": int((unequal & behind).sum()),
        "explained_reader_behind": int((unequal & ahead & ~behind).sum()),
        "unexplained": int((unequal & ~behind & ~ahead).sum()),
    }


def compare(scores: pd.DataFrame, offline: pd.DataFrame, booster, snapshot: np.ndarray) -> dict[str, Any]:
    """Served against offline, per feature and for the scores (rows: transaction ids, aligned)."""
    from cardscore.features.fresh import FRESH_FEATURES, Aggregate, Entity

    served = pd.DataFrame([json.loads(v) for v in scores["fresh_features"]], index=scores.index)
    event_us = scores["event_us"].to_numpy(np.int64)
    per_feature, own = {}, []
    for f in FRESH_FEATURES:
        card_own = f.entity is Entity.CARD and f.aggregate is not Aggregate.FRAUDS_REPORTED
        as_of = scores["card_as_of_us" if f.entity is Entity.CARD else "terminal_as_of_us"].to_numpy(np.int64)
        if card_own:
            own.append(f.name)
        per_feature[f.name] = explained(served[f.name].to_numpy(np.float64), offline[f.name].to_numpy(np.float64),
                                        as_of, event_us, lag_explains=not card_own)
    names = [f.name for f in FRESH_FEATURES]
    all_equal = (served[names].to_numpy(np.float64) == offline[names].to_numpy(np.float64)).all(axis=1)
    batch = booster.inplace_predict(np.hstack((snapshot, offline[names].to_numpy(np.float64)))).astype(np.float64)
    streamed = scores["score"].to_numpy(np.float64)
    same_score = streamed == batch
    values = [v for f in per_feature.values() for v in [f["equal_share"]]]
    return {
        "transactions": len(scores),
        "per_feature": per_feature,
        "card_own_features_equal_share": min(per_feature[n]["equal_share"] for n in own),
        "all_values_equal_share": round(float(np.mean(values)), 6),
        "transactions_with_every_feature_equal_share": round(float(all_equal.mean()), 6),
        "unexplained_differences": sum(f["unexplained"] for f in per_feature.values()),
        "scores": {
            "equal_to_batch_share": round(float(same_score.mean()), 6),
            "equal_where_every_feature_equal": bool(same_score[all_equal].all()),
            "max_abs_difference": float(np.max(np.abs(streamed - batch))) if len(batch) else 0.0,
        },
    }


def streamed_scores(settings) -> pd.DataFrame:
    rows = []
    for m in read_topic(settings, settings.kafka.topics.scores):
        v = json.loads(m.value())
        rows.append({"transaction_id": v["transaction_id"], "score": v["score"], "fresh_features": v["fresh_features"],
                     "event_us": _us(v["event_time"]), "card_as_of_us": _us(v["fresh_card_as_of"]),
                     "terminal_as_of_us": _us(v["fresh_terminal_as_of"]), "scored_at_us": _us(v["scored_at"])})
    # at least once: a re-delivered transaction is scored again with the same values; keep the first
    return pd.DataFrame(rows).drop_duplicates("transaction_id").set_index("transaction_id")


def _us(text: str | None) -> int:
    from cardscore.schemas.timestamps import parse_timestamp_us

    return -1 if text is None else parse_timestamp_us(text)


def one_run(home: Path, bootstrap: str, world, day, rate: float, work: Path, producer) -> tuple[pd.DataFrame, dict]:
    from cardscore.services.broker import create_topics, project_topics
    from cardscore.simulator.kafka import replay_messages

    suffix = uuid.uuid4().hex[:8]
    settings = _settings(home, bootstrap, suffix)
    create_topics(settings.kafka_conf(), project_topics(settings))
    config = _config(settings, work / f"config-{suffix}.yaml")
    scorer_config = _scorer_config(settings, work / f"scorer-{suffix}.yaml", f"scorer-{suffix}")
    messages, report = replay_messages(settings, day)
    inputs = [settings.kafka.topics.transactions, settings.kafka.topics.labels]
    logs = {name: work / f"{name}-{suffix}.log" for name in ("card", "terminal", "scorer")}
    procs = {step: start_step(config, step, _free_port(), logs[step]) for step in ("card", "terminal")}
    procs["scorer"] = start_cardscore(scorer_config, ["stream"], logs["scorer"])
    try:
        wait_for(lambda: all('"fresh_stream.bootstrapped"' in logs[s].read_text() for s in ("card", "terminal"))
                 and '"stream.assigned"' in logs["scorer"].read_text(),
                 "the steps loaded their history and the scorer has its partitions", list(procs.values()), 600)
        for topic in inputs:
            producer.list_topics(topic, timeout=10)
        started = time.perf_counter()
        paced_send(producer, messages, rate)
        send_s = time.perf_counter() - started
        wait_for(lambda: committed(settings, f"scorer-{suffix}", [settings.kafka.topics.transactions])
                 >= report.transactions, "every transaction scored (the scorer committed it)",
                 list(procs.values()), 600)
        wait_for(lambda: committed(settings, settings.fresh_stream.card_group_id, inputs) >= len(messages),
                 "the card step committed every message", list(procs.values()), 600)
        scores = streamed_scores(settings)
        return scores, {"messages": len(messages), "transactions": report.transactions, "labels": report.labels,
                        "offered_rate": rate, "achieved_send_rate": round(len(messages) / send_s, 1),
                        "send_seconds": round(send_s, 2)}
    finally:
        stop_all(list(procs.values()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fresh_consistency", description=__doc__.splitlines()[0])
    world_arguments(parser, "fresh_consistency", "days of the world (the last is streamed)")
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second, open loop")
    args = parser.parse_args(argv)

    from cardscore.core import catalog
    from cardscore.core.engine import get_spark, stop_spark
    from cardscore.core.stage import job_context
    from cardscore.features.fresh import FRESH_FEATURE_NAMES
    from cardscore.features.online_reader import open_reader
    from cardscore.jobs.fresh_features.stage import fresh_features_day
    from tests.scoring.world import fresh_booster, register

    params = world_parameters(args.days, args.smoke)
    work = Path(tempfile.mkdtemp(prefix="cardscore-bench-fresh-consistency-"))
    home = work / "home"
    try:
        world, [day], settings = streamed_world(params, 1, home, work)
        tx = world.transactions
        booster = fresh_booster()
        version = register(settings, booster)
        print(f"world: {len(tx)} transactions; lake before {day}, streaming {day}; champion v{version} "
              "(snapshot_fresh_v1)", flush=True)
        with running_broker(args.broker, work) as bootstrap:
            producer = load_producer(bootstrap)
            scores, run = one_run(home, bootstrap, world, day, args.rate, work, producer)
            producer.flush(10)
            del producer
        print(f"scored {len(scores)} of {run['transactions']} transactions; computing the offline values", flush=True)

        # The offline side: the day in the lake, the real stage.
        job = job_context(settings, get_spark(settings))
        silver_until(world, day, job.lake, work)
        fresh_features_day(job, day)
        offline = (job.lake.read(catalog.FRESH_FEATURES).where(f"tx_date = DATE'{day}'")
                   .select("transaction_id", *FRESH_FEATURE_NAMES).toPandas().set_index("transaction_id"))
        ids = scores.index.intersection(offline.index)
        scores, offline = scores.loc[ids], offline.loc[ids]
        day_tx = tx.set_index("transaction_id").loc[ids]
        reader = open_reader(settings)
        try:
            snapshot = reader.read(day_tx["customer_id"].to_numpy(np.int64), day_tx["terminal_id"].to_numpy(np.int64),
                                   day_tx["amount"].to_numpy(np.float64), scores["event_us"].to_numpy(np.int64)).matrix
        finally:
            reader.close()
        result = compare(scores, offline, booster, snapshot)
        span_us = int(scores["event_us"].max() - scores["event_us"].min())
        result["replay"] = {**run, "event_time_compression": round(span_us / 1e6 / run["send_seconds"], 1)}
        lag_us = (scores["event_us"] - scores["terminal_as_of_us"]).clip(lower=0)
        result["terminal_as_of_behind_event_time_s"] = {
            f"p{q}": round(float(np.percentile(lag_us, q)) / 1e6, 1) for q in (50, 90, 99)}
        payload = {
            "parameters": {"broker": args.broker, "rate": args.rate, "partitions": PARTITIONS, "streamed_day": str(day),
                           "world": {"cards": params.n_customers, "terminals": params.n_terminals,
                                     "days": params.n_days, "transactions": len(tx)},
                           "targets": "card features 100% equal; >= 99.9% of all values equal, the rest explained "
                                      "by the as-of times"},
            "result": result,
        }
        # one file per broker: bench/results/fresh_consistency.json (embedded), fresh_consistency.kafka.json
        path = write_result("fresh_consistency" if args.broker == "embedded" else f"fresh_consistency.{args.broker}", payload,
                            smoke=args.smoke)
        print(json.dumps({k: v for k, v in result.items() if k != "per_feature"}, indent=1))
        print(f"wrote {path}")
        return 0
    finally:
        stop_spark()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
