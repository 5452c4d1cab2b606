"""Batch, stream and API score the same day alike: the day is replayed through the real broker
to the real stream scorer (online store materialized from the same gold snapshot), scored in
batch, and posted to the scoring API; every transaction gets the same score, flags and
snapshot date from all three (the API's answer is the stream's message, field for field)."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from cardscore.core.config import load_settings
from cardscore.jobs.score_batch.stage import score_day
from cardscore.services.broker import create_topics, project_topics
from tests.scoring import world
from tests.streaming import world as stream
from tests.streaming.conftest import STREAMING_TEST_SETTINGS


def test_batch_and_stream_give_each_transaction_the_same_score(spark, broker, scoring_world) -> None:
    from cardscore.core.stage import job_context
    from cardscore.features.store import materialize

    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(
        overrides={
            "home": str(scoring_world.home),
            "scoring": {"output_table": f"gold.predictions_{suffix}"},
            "kafka": {
                "mode": "external",
                "client": {"bootstrap.servers": broker.bootstrap},
                "consumer": stream.TEST_CONSUMER,
                "partitions": 2,
                "topics": {"transactions": f"tx-{suffix}", "scores": f"scores-{suffix}", "dlq": f"dlq-{suffix}",
                           "labels": f"labels-{suffix}"},
            },
            "streaming": {**STREAMING_TEST_SETTINGS, "group_id": f"skew-{suffix}"},
        }
    )
    create_topics(settings.kafka_conf(), project_topics(settings))
    materialize(settings, spark, world.DAY)  # the online store serves DAY's snapshot

    silver = world.silver_day(scoring_world.transactions, world.DAY)
    records = [
        {
            "transaction_id": int(row.transaction_id),
            "event_time": int(pd.Timestamp(row.event_time).value // 1000),
            "customer_id": int(row.customer_id),
            "terminal_id": int(row.terminal_id),
            "amount": float(row.amount),
        }
        for row in silver.itertuples()
    ]
    stream.produce(settings, records)
    with stream.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.totals.get("scored", 0) >= len(records), 120, "every score")
    streamed = stream.scores_by_id(stream.read_all(settings, settings.kafka.topics.scores))
    assert sorted(streamed) == sorted(silver["transaction_id"].tolist())
    assert all(len(v) == 1 for v in streamed.values())

    job = job_context(settings, spark)
    score_day(job, world.DAY)
    batch = world.predictions(job.lake, settings, world.DAY).set_index("transaction_id")

    by_id = pd.DataFrame([v[0] for v in streamed.values()]).set_index("transaction_id").loc[batch.index]
    assert np.abs(by_id["score"].to_numpy() - batch["score"].to_numpy()).max() < 1e-6
    for column in ("unknown_customer", "unknown_terminal", "model_name", "model_version", "customer_id", "terminal_id"):
        assert (by_id[column].to_numpy() == batch[column].to_numpy()).all(), column
    stream_dates = by_id["feature_snapshot_date"].map(lambda d: None if d is None else pd.Timestamp(d).date())
    batch_dates = batch["feature_snapshot_date"].map(lambda d: None if pd.isna(d) else d)
    assert stream_dates.tolist() == batch_dates.tolist()
    assert batch["unknown_customer"].any() and batch["unknown_terminal"].any()  # the cases are exercised
    # Same event time on both sides, to the microsecond.
    stream_times = pd.to_datetime(by_id["event_time"], utc=True).dt.tz_localize(None)
    assert (stream_times.to_numpy() == batch["event_time"].to_numpy()).all()

    # The scoring API, over HTTP, in batches of 100: the stream's message for each transaction.
    from tests.serving.conftest import RunningApi, wire

    with RunningApi(settings) as api:
        api.wait_ready()
        answered = []
        for start in range(0, len(records), 100):
            response = api.post([wire(r) for r in records[start : start + 100]])
            assert response.status_code == 200, response.text
            answered += response.json()
    for result in answered:
        message = streamed[result["transaction_id"]][0]
        assert {k: result[k] for k in message if k != "scored_at"} == {k: v for k, v in message.items() if k != "scored_at"}
