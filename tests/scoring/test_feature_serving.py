"""The batch scorer's equi-join on D's snapshot serves exactly what Feast's point-in-time
retrieval serves, and the published scores are bit for bit those of the Feast path.

Feast's retrieval (`historical_features_spark`, the training sets' path) stays the reference:
for the scoring world's days (hand-made unknown customers and terminals included, one at
exactly 00:00:00), both give the same feature rows, value for value."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from cardscore.core import catalog
from cardscore.features.definitions import MODEL_FEATURES, SNAPSHOT_DATE
from cardscore.features.retrieval import historical_features_spark
from cardscore.jobs.score_batch.stage import score_day
from cardscore.jobs.score_batch.transforms import (
    PASSTHROUGH,
    entity_frame,
    prediction_records,
    score_in_engine,
    served_features,
)
from cardscore.model.scoring import booster_bytes
from tests.scoring import world

COLUMNS = [*PASSTHROUGH, "event_timestamp", *MODEL_FEATURES]


def _inputs(lake, day):
    transactions = lake.read(catalog.SILVER_TRANSACTIONS).where(F.col("tx_date") == F.lit(day))
    customers = lake.read(catalog.CUSTOMER_FEATURES).where(F.col(SNAPSHOT_DATE) == F.lit(day))
    terminals = lake.read(catalog.TERMINAL_FEATURES).where(F.col(SNAPSHOT_DATE) == F.lit(day))
    return transactions, customers, terminals


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[COLUMNS].sort_values("transaction_id", kind="mergesort").reset_index(drop=True)
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    return out


def test_the_equi_join_serves_what_feast_point_in_time_retrieval_serves(job, scoring_world) -> None:
    days = []
    for day in (world.DAY, world.NEXT_DAY):
        transactions, customers, terminals = _inputs(job.lake, day)
        served = served_features(transactions, customers, terminals).toPandas()
        entities = entity_frame(transactions, customers.select("customer_id"), terminals.select("terminal_id"))
        feast = historical_features_spark(job.settings, job.spark, entities).toPandas()

        ours, theirs = _tidy(served), _tidy(feast)
        assert len(ours) == len(world.silver_day(scoring_world.transactions, day))
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
        days.append(ours)
    both = pd.concat(days)
    # The unknown cases are exercised (new customers on DAY are known on NEXT_DAY), and
    # unknown entities carry the defaults.
    assert both["unknown_customer"].any() and both["unknown_terminal"].any()
    assert (both.loc[both["unknown_customer"], "customer_id_nb_tx_30day_window"] == 0.0).all()
    assert (both.loc[both["unknown_terminal"], "terminal_id_risk_30day_window"] == 0.0).all()
    assert (both.loc[both["transaction_id"] == 900_000_003, "event_timestamp"].dt.hour == 0).all()


def test_published_scores_are_bit_for_bit_those_of_the_feast_path(job, scoring_world) -> None:
    """What the scorer published before the equi-join (Feast retrieval, then the same scoring
    and records) and what it publishes now: identical rows, scores compared with ==."""
    day = world.DAY
    report = score_day(job, day)
    published = world.predictions(job.lake, job.settings, day)

    transactions, customers, terminals = _inputs(job.lake, day)
    entities = entity_frame(transactions, customers.select("customer_id"), terminals.select("terminal_id"))
    feast_scored = score_in_engine(historical_features_spark(job.settings, job.spark, entities),
                                   booster_bytes(scoring_world.booster))
    feast_path = prediction_records(feast_scored, report.model_name, report.model_version, day,
                                     report.run_id, datetime(2030, 1, 1, tzinfo=UTC)).toPandas()
    feast_path = feast_path.sort_values("transaction_id", kind="mergesort").reset_index(drop=True)

    assert published["transaction_id"].tolist() == feast_path["transaction_id"].tolist()
    assert np.array_equal(published["score"].to_numpy(), feast_path["score"].to_numpy())
    same = ["transaction_id", "customer_id", "terminal_id", "event_time", "score", "feature_snapshot_date",
            "unknown_customer", "unknown_terminal", "model_version", "tx_date"]
    pd.testing.assert_frame_equal(published[same], feast_path[same], check_exact=True)
    # And the training path's features through the booster give the same bits.
    silver = world.silver_day(scoring_world.transactions, day)
    training = world.training_path_features(job.spark, job.settings, silver)
    expected = pd.Series(scoring_world.booster.inplace_predict(training[list(MODEL_FEATURES)].to_numpy(np.float64))
                         .astype(np.float64), index=training["transaction_id"].to_numpy())
    assert np.array_equal(published["score"].to_numpy(), expected.loc[published["transaction_id"]].to_numpy())
