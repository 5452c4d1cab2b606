"""Promoting a new champion during a replay: the scorer swaps models between batches, every
score names the version that produced it, and no message is lost or scored twice."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from cardscore.core import registry
from tests.streaming import world
from tests.streaming.conftest import own_model
from tests.streaming.test_delivery import Replay, source_offsets


def test_model_hot_swap_between_batches(stream_settings, stream_world) -> None:
    settings = own_model(stream_settings)
    v1 = world.register(settings, world.booster(seed=0))
    v2 = world.register(settings, world.booster(seed=1), promote=False)
    records = world.transactions(2000, seed=21)
    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.metric("cardscore_stream_assigned_partitions") == 2, 60, "assignment")
        with Replay(settings, records, rate=400):
            running.wait_for(lambda: running.totals.get("scored", 0) >= 400, 60, "400 scores by v1")
            registry.promote(settings, actor="tests", reason="hot swap", version=v2)
            running.wait_for(lambda: running.metric("cardscore_stream_model_version") == float(v2), 30, "the swap")
        running.wait_for(lambda: running.totals.get("scored", 0) >= len(records), 60, "every score")
        assert running.metric("cardscore_stream_model_swaps_total") == 1

    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in records)
    assert all(len(v) == 1 for v in scores.values())
    by_id = {tx: v[0] for tx, v in scores.items()}
    versions = {s["model_version"] for s in by_id.values()}
    assert versions == {v1, v2} and {s["model_name"] for s in by_id.values()} == {settings.mlflow.model_name}

    # Re-score every transaction with each version's booster, on features read independently.
    matrix = world.expected_matrix(records, stream_world.customers, stream_world.terminals)
    boosters = {v: registry.load_booster(settings, registry.get_version(settings, v)) for v in (v1, v2)}
    rescored = {v: b.inplace_predict(matrix) for v, b in boosters.items()}
    for i, record in enumerate(records):
        score = by_id[record["transaction_id"]]
        assert abs(score["score"] - rescored[score["model_version"]][i]) < 1e-6
    assert np.mean(np.abs(rescored[v1] - rescored[v2]) > 1e-3) > 0.5  # the versions do differ

    # In each partition the swap happens once, between two batches: v1 ... v1, v2 ... v2.
    where = source_offsets(settings)
    sequence = defaultdict(list)
    for tx, (partition, _offset) in sorted(where.items(), key=lambda kv: kv[1]):
        sequence[partition].append(by_id[tx]["model_version"])
    for versions_in_order in sequence.values():
        switch = versions_in_order.index(v2) if v2 in versions_in_order else len(versions_in_order)
        assert set(versions_in_order[:switch]) <= {v1} and set(versions_in_order[switch:]) <= {v2}
