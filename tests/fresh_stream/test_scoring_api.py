"""The scoring API serving a model of the fresh feature set (`serving.fresh_features`), over
the lake on Sail and the Feast SQLite store holding what the fresh-stream pipeline stored of
the lake's days.

DAY's transactions are posted in time order, one request or a batch of ten at a time: the
API then knows the lake's events and every transaction it scored, exactly as the stream
scorer of `test_scorer.py`, so every served value equals one time-ordered state's (DAY's
label reports reach nobody here), each score is the booster's on the served values, the
response carries the values and as-of times as the stream's score message does, and the
contributions name fresh features. Without the setting the same champion is refused: the
flagged fallback rules answer.
"""

from __future__ import annotations

import json
import uuid

import numpy as np

from cardscore.core import registry
from cardscore.core.config import load_settings
from cardscore.features.fresh import FRESH_FEATURE_NAMES
from cardscore.features.online_reader import open_reader
from cardscore.schemas.timestamps import format_timestamp_us
from tests.fresh_stream.world import DAY, expected_values, store_the_lake, us_of
from tests.scoring import world as scoring_world
from tests.serving.conftest import SERVING_TEST_SETTINGS, RunningApi


def test_the_api_serves_a_fresh_model_on_the_values_of_one_ordered_state(streamed_world) -> None:
    settings, simulated, lake = streamed_world
    model_name = f"fresh-{uuid.uuid4().hex[:8]}"
    settings.mlflow.model_name = model_name
    registry.clear_caches()
    clocks = store_the_lake(settings, lake)
    booster = scoring_world.fresh_booster()
    version = scoring_world.register(settings, booster)
    expected = expected_values(simulated)

    day = simulated.transactions[simulated.transactions["event_time"].dt.date == DAY]
    day = day.assign(us=us_of(day["event_time"])).sort_values(["us", "transaction_id"])
    bodies = [{"transaction_id": int(r.transaction_id), "customer_id": int(r.customer_id),
               "terminal_id": int(r.terminal_id), "amount": float(r.amount),
               "event_time": format_timestamp_us(int(r.us))} for r in day.itertuples(index=False)]
    overrides = {"home": str(settings.home_path), "mlflow": {"model_name": model_name},
                 "serving": {**SERVING_TEST_SETTINGS, "fresh_features": True}}
    results = []
    with RunningApi(load_settings(overrides=overrides)) as api:
        assert api.wait_ready()["model"]["version"] == version
        i = 0
        while i < len(bodies):  # singles and batches of ten, in time order
            size = 1 if (i // 10) % 2 else 10
            response = api.post(bodies[i] if size == 1 else bodies[i:i + size])
            assert response.status_code == 200, response.text
            results += [response.json()] if size == 1 else response.json()
            i += size
    assert len(results) == len(bodies) > 50

    ids = [r["transaction_id"] for r in results]
    served = np.array([list(json.loads(r["fresh_features"]).values()) for r in results], dtype=np.float64)
    assert list(json.loads(results[0]["fresh_features"])) == list(FRESH_FEATURE_NAMES)
    want = expected.loc[ids, list(FRESH_FEATURE_NAMES)].to_numpy(np.float64)
    assert np.array_equal(served, want), {n: int(c) for n, c in zip(FRESH_FEATURE_NAMES, (served != want).sum(axis=0),
                                                                      strict=True) if c}
    reader = open_reader(settings)
    try:
        snapshot = reader.read(day["customer_id"].to_numpy(np.int64), day["terminal_id"].to_numpy(np.int64),
                               day["amount"].to_numpy(np.float64), day["us"].to_numpy(np.int64)).matrix
    finally:
        reader.close()
    scores = booster.inplace_predict(np.hstack((snapshot, served))).astype(np.float64)
    assert [r["score"] for r in results] == scores.tolist()
    assert {r["model_version"] for r in results} == {version} and not any(r["fallback"] for r in results)
    card_clock = format_timestamp_us(clocks[next(iter(clocks))])[:19]
    assert any(r["fresh_card_as_of"] and r["fresh_card_as_of"].startswith(card_clock) for r in results)
    assert any(c["feature"] in FRESH_FEATURE_NAMES for r in results for c in r["contributions"])

    # Without the setting the API does not serve the fresh set: the fallback rules answer, flagged.
    overrides["serving"] = dict(SERVING_TEST_SETTINGS)
    registry.clear_caches()
    with RunningApi(load_settings(overrides=overrides)) as api:
        api.wait_ready()
        refused = api.post(bodies[0]).json()
    assert refused["fallback"] is True and refused["fresh_features"] is None
