"""The batch scorer's transformations as one function the classic-Spark runner can call
(`tests.support.classic.run_on_classic`): the equi-join on the day's snapshot rows with the
generated request-time flags, scoring and prediction records."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from cardscore.jobs.score_batch.transforms import (
    prediction_records,
    score_in_engine,
    served_features,
)

SCORED_AT = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
RUN_ID = "parity-run"


def predictions(spark, transactions, customer_rows, terminal_rows, model_path: str, day: str, version: str):
    """The day's silver transactions served the day's snapshot rows and scored, all on this
    engine: the prediction records (fixed scored_at and run_id)."""
    features = served_features(transactions, customer_rows, terminal_rows)
    scored = score_in_engine(features, Path(model_path).read_bytes())
    return prediction_records(scored, "parity-model", version, date.fromisoformat(day), RUN_ID, SCORED_AT)
