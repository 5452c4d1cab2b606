"""The project's core promise under a release: the stream scorer (real broker, real online
store, real registry), the batch scorer (Sail) and the scoring API (real HTTP) give every
transaction the same arm, the same served score, the same version and the same shadow score;
frozen, all three serve the same flagged fallback scores, and the stream and the API switch
within a model poll."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from cardscore.core import release
from cardscore.core.config import load_settings
from cardscore.core.stage import job_context
from cardscore.jobs.score_batch.stage import score_day
from cardscore.model.fallback import FALLBACK_VERSION
from cardscore.services.broker import create_topics, project_topics
from tests.scoring import world
from tests.serving.conftest import SERVING_TEST_SETTINGS, RunningApi, wire
from tests.streaming import world as stream
from tests.streaming.conftest import STREAMING_TEST_SETTINGS

COMPARED = ("score", "arm", "model_name", "model_version", "fallback", "shadow_model_version", "shadow_score")


def _stream_frame(messages, ids: pd.Index, occurrence: int) -> pd.DataFrame:
    by_id = stream.scores_by_id(messages)
    return pd.DataFrame([by_id[tx][occurrence] for tx in ids]).set_index("transaction_id")


def _api_frame(api: RunningApi, records: list[dict], ids: pd.Index) -> pd.DataFrame:
    """The scoring API's answers for the records, in batches of 100, in the order of `ids`."""
    answered = []
    for start in range(0, len(records), 100):
        response = api.post([wire(r) for r in records[start : start + 100]])
        assert response.status_code == 200, response.text
        answered += response.json()
    return pd.DataFrame(answered).set_index("transaction_id").loc[ids]


def _assert_same(streamed: pd.DataFrame, batch: pd.DataFrame) -> None:
    for column in COMPARED:
        s, b = streamed[column].to_numpy(), batch[column].to_numpy()
        if column in ("score", "shadow_score"):
            s, b = s.astype(np.float64), b.astype(np.float64)
            assert (np.isnan(s) == np.isnan(b)).all(), column
            assert np.nanmax(np.abs(s - b), initial=0.0) < 1e-6, column
        else:
            assert [None if pd.isna(v) else v for v in s] == [None if pd.isna(v) else v for v in b], column


def test_stream_and_batch_serve_the_same_release(spark, broker, scoring_world) -> None:
    from cardscore.features.store import materialize

    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(overrides={
        "home": str(scoring_world.home),
        "scoring": {"output_table": f"gold.predictions_{suffix}"},
        "mlflow": {"model_name": f"release-stream-{suffix}"},  # this test moves aliases
        "kafka": {
            "mode": "external",
            "client": {"bootstrap.servers": broker.bootstrap},
            "consumer": stream.TEST_CONSUMER,
            "partitions": 2,
            "topics": {"transactions": f"tx-{suffix}", "scores": f"scores-{suffix}", "dlq": f"dlq-{suffix}",
                       "labels": f"labels-{suffix}"},
        },
        "streaming": {**STREAMING_TEST_SETTINGS, "group_id": f"release-{suffix}"},
        "serving": dict(SERVING_TEST_SETTINGS),
    })
    create_topics(settings.kafka_conf(), project_topics(settings))
    materialize(settings, spark, world.DAY)
    champion = world.register(settings, scoring_world.booster)
    candidate = world.register(settings, world.other_booster(11), promote=False)
    release.start_shadow(settings, candidate, actor="tests", reason="parity")
    release.set_canary(settings, 40, candidate, actor="tests", reason="parity")

    silver = world.silver_day(scoring_world.transactions, world.DAY)
    records = [
        {"transaction_id": int(r.transaction_id), "event_time": int(pd.Timestamp(r.event_time).value // 1000),
         "customer_id": int(r.customer_id), "terminal_id": int(r.terminal_id), "amount": float(r.amount)}
        for r in silver.itertuples()
    ]
    job = job_context(settings, spark)
    scores_topic = settings.kafka.topics.scores
    with stream.InProcessScorer(settings) as running, RunningApi(settings) as api:
        stream.produce(settings, records)
        running.wait_for(lambda: running.totals.get("scored", 0) >= len(records), 120, "every score")
        score_day(job, world.DAY)
        batch = world.predictions(job.lake, settings, world.DAY).set_index("transaction_id")
        streamed = _stream_frame(stream.read_all(settings, scores_topic), batch.index, 0)
        assert set(batch["arm"]) == {"champion", "canary"}  # both arms are exercised
        assert set(batch["model_version"]) == {champion, candidate}
        _assert_same(streamed, batch)
        api.wait_ready()
        _assert_same(_api_frame(api, records, batch.index), batch)  # the API serves the same release

        # The kill switch: the running stream and API serve the flagged rules within a poll.
        release.freeze(settings, actor="tests", reason="drill")
        running.wait_for(lambda: running.metric("cardscore_stream_model_swaps_total") >= 1, 30, "the freeze")
        stream.produce(settings, records)
        running.wait_for(lambda: running.totals.get("scored", 0) >= 2 * len(records), 120, "frozen scores")
        running.wait_for(lambda: api.get("/readyz").json().get("release", {}).get("fallback"), 30, "the API's freeze")
        frozen_api = _api_frame(api, records, batch.index)
    score_day(job, world.DAY)
    frozen_batch = world.predictions(job.lake, settings, world.DAY).set_index("transaction_id")
    frozen_stream = _stream_frame(stream.read_all(settings, scores_topic), frozen_batch.index, 1)
    assert frozen_batch["fallback"].all() and (frozen_batch["model_version"] == FALLBACK_VERSION).all()
    _assert_same(frozen_stream, frozen_batch)
    _assert_same(frozen_api.loc[frozen_batch.index], frozen_batch)
