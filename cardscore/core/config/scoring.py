"""Settings of the nightly batch scorer (`cardscore run score`, `jobs/score_batch/main.py`).

The features, the model input order and the output contract are not settings: they are the
model's contract (`features.definitions.MODEL_FEATURES`, `schemas.contracts.PREDICTION_RECORD`).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from cardscore.core.catalog import PREDICTIONS
from cardscore.core.config.base import Section

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")


class ScoringGateSettings(Section):
    """Run-time values of the predictions gate (expectations/suites/predictions.json).

    The structural checks (one row per silver transaction, unique ids, scores in [0, 1], a
    model version on every row) are not settings; this bound only catches a model that is
    technically valid but scores a whole day implausibly high.
    """

    max_mean_score: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="highest plausible mean score of a day (fraud is ~1% of transactions; a "
        "day averaging above this means a broken model or broken features)",
    )


class ScoringSettings(Section):
    """Settings of the nightly batch scorer."""

    model_alias: str = Field(
        "champion",
        description="registry alias whose version scores; resolved once per run and recorded "
        "on every row (e.g. `challenger` with another output_table for shadow scoring)",
    )
    output_table: str = Field(
        PREDICTIONS,
        description="logical Delta table the predictions are published to (layer.name)",
    )
    require_snapshot: bool = Field(
        True,
        description="fail when neither gold feature table has a row for the day (the features "
        "job did not run); false scores every entity as unknown (all features 0.0)",
    )
    predict_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="XGBoost threads per engine task (0: XGBoost's default, every core)",
    )
    staging: str | None = Field(
        None,
        description="URI where a run stages its predictions before the gate; default <lake>/_staging",
    )
    gate: ScoringGateSettings = Field(default_factory=ScoringGateSettings)

    @field_validator("output_table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not _TABLE_NAME.match(value):
            raise ValueError("must look like 'layer.name' (letters, digits, underscores)")
        return value
