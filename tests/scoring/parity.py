"""The batch scorer's transformations as one function the classic-Spark runner can call
(`tests.support.classic.run_on_classic`): flags, scoring and prediction records."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from cardscore.features.definitions import MODEL_FEATURES
from cardscore.jobs.score_batch.transforms import (
    PASSTHROUGH,
    TRANSACTION_ID,
    entity_frame,
    prediction_records,
    score_in_engine,
)

SCORED_AT = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
RUN_ID = "parity-run"


def predictions(spark, transactions, customer_keys, terminal_keys, features, model_path: str, day: str,
                version: str):
    """Unknown flags from `entity_frame` on this engine, the given joined features, scored on
    this engine: the prediction records (fixed scored_at and run_id)."""
    flags = entity_frame(transactions, customer_keys, terminal_keys).select(*PASSTHROUGH, "event_timestamp")
    values = features.select(TRANSACTION_ID, *MODEL_FEATURES)
    joined = flags.join(values, TRANSACTION_ID)
    scored = score_in_engine(joined, Path(model_path).read_bytes())
    return prediction_records(scored, "parity-model", version, date.fromisoformat(day), RUN_ID, SCORED_AT)
