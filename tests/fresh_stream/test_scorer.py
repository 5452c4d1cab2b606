"""The stream scorer serving a model of the fresh feature set (`streaming.fresh_features`),
over the embedded broker, the lake on Sail and the Feast SQLite store.

The fresh-stream pipeline had caught up with the lake (the events of the days before DAY
stored, as its start-up writes them); DAY is replayed to the scorer alone. So the scorer
knows the lake's events and every transaction of DAY it scored, and not DAY's label reports
(nobody consumes them here). Expected: every transaction answered at its own time by one
state of exactly those events. The card's features are exact whatever the order the partitions
were read in (a card's transactions come in order on one partition); a terminal's transactions
come from every partition, so its counts may only miss a transaction of another partition read
later, never count one twice. Each score is the booster's on the served values, and the
message logs them with the as-of times of the stored rows (score_event v3).
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd

from cardscore.core import registry
from cardscore.features.fresh import FRESH_FEATURE_NAMES, FRESH_FEATURES, Aggregate, Entity
from cardscore.features.fresh_store import FreshEventsStore
from cardscore.features.online_reader import open_reader
from cardscore.features.store import feature_store
from cardscore.simulator.kafka import replay_day
from cardscore.streaming.output import SCORE_HEADERS
from tests.fresh_stream.world import DAY, expected_values, store_the_lake, us_of
from tests.scoring import world as scoring_world
from tests.streaming import world
from tests.streaming.conftest import STREAMING_TEST_SETTINGS

TERMINAL_COUNTS = [f.name for f in FRESH_FEATURES if f.entity is Entity.TERMINAL and f.aggregate is Aggregate.COUNT]


def test_the_scorer_serves_a_fresh_model_on_exact_card_values_and_logs_them(streamed_world) -> None:
    settings, simulated, lake = streamed_world
    settings.streaming = settings.streaming.model_copy(update={
        **STREAMING_TEST_SETTINGS, "group_id": f"fresh-scorer-{uuid.uuid4().hex[:8]}", "fresh_features": True})
    settings.mlflow.model_name = f"fresh-{uuid.uuid4().hex[:8]}"
    registry.clear_caches()
    clocks = store_the_lake(settings, lake)
    booster = scoring_world.fresh_booster()
    version = scoring_world.register(settings, booster)

    replayed = replay_day(settings, DAY)
    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.totals.get("messages", 0) >= replayed.transactions, 120, "the replayed day")
        assert running.totals["scored"] == replayed.transactions
        # every score's pipeline lag is on /metrics, per entity, or counted as a row never stored
        for entity in ("card", "terminal"):
            lagged = running.metric("cardscore_stream_fresh_features_lag_seconds_count", {"entity": entity})
            missing = running.metric("cardscore_stream_fresh_rows_missing_total", {"entity": entity})
            assert lagged + missing == replayed.transactions and lagged > 0
    messages = world.read_all(settings, settings.kafka.topics.scores)
    assert {tuple(m.headers()) for m in messages} == {tuple(SCORE_HEADERS)}  # score_event.v3
    streamed = {tx: v[0] for tx, v in world.scores_by_id(messages).items()}
    expected = expected_values(simulated)
    assert sorted(streamed) == sorted(expected.index)
    assert {s["model_version"] for s in streamed.values()} == {version}

    ids = expected.index.to_numpy()
    served = pd.DataFrame([json.loads(streamed[tx]["fresh_features"]) for tx in ids], index=ids)
    assert list(served.columns) == list(FRESH_FEATURE_NAMES)
    exact = [n for n in FRESH_FEATURE_NAMES if n not in TERMINAL_COUNTS]
    diff = served[exact].to_numpy(np.float64) != expected[exact].to_numpy(np.float64)
    assert not diff.any(), {n: int(c) for n, c in zip(exact, diff.sum(axis=0), strict=True) if c}
    assert served[scoring_world.FRESH_DRIVER].nunique() > 2 and served["terminal_nb_frauds_reported_28d"].max() > 0
    # A terminal's count may miss a transaction read later from another partition, never more.
    counts, want = served[TERMINAL_COUNTS].to_numpy(np.int64), expected[TERMINAL_COUNTS].to_numpy(np.int64)
    assert (counts <= want).all() and (counts == want).all(axis=1).mean() > 0.8

    # Each score is the booster's on the served snapshot and fresh values, bit for bit.
    day = simulated.transactions.set_index("transaction_id").loc[ids]
    reader = open_reader(settings)
    try:
        snapshot = reader.read(day["customer_id"].to_numpy(np.int64), day["terminal_id"].to_numpy(np.int64),
                               day["amount"].to_numpy(np.float64),
                               us_of(day["event_time"]).to_numpy(np.int64)).matrix
    finally:
        reader.close()
    scores = booster.inplace_predict(np.hstack((snapshot, served.to_numpy(np.float64)))).astype(np.float64)
    assert np.array_equal(np.array([streamed[tx]["score"] for tx in ids]), scores)

    # The as-of times: the pipeline's clock of the stored rows; null for an entity it never saw.
    stored_cards = set(FreshEventsStore(feature_store(settings)).read(Entity.CARD, day["customer_id"].unique().tolist()))
    card_clock = pd.Timestamp(clocks[Entity.CARD], unit="us", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")
    for tx, card in zip(ids, day["customer_id"], strict=True):
        as_of = streamed[tx]["fresh_card_as_of"]
        assert (as_of is not None and as_of.startswith(card_clock)) if card in stored_cards else as_of is None
