"""Settings of training, evaluation and the promotion gate.

The defaults reproduce the Fraud Detection Handbook's protocol (chapter 3.4 / 5): train on
7 days from 2018-07-25, wait 7 days (the feedback delay), test on the next 7 days, card
precision in the top 100 per day. The first training day is kept where the handbook puts it
in its world, 115 days after the world's first day, so a world that starts on another date
(`simulator.start_date`) gets the same protocol in its own calendar unless it is set.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator

from cardscore.core.config.base import Section

Metric = Literal["auc_roc", "average_precision", "card_precision_at_k"]


# The handbook's first training day, 2018-07-25, is day 115 of its world (from 2018-04-01).
HANDBOOK_TRAIN_OFFSET_DAYS = 115


class ProtocolSettings(Section):
    """Date windows of one train/test split (the handbook's `get_train_test_set`)."""

    train_start: date | None = Field(
        None, description=f"first training day (UTC); unset: {HANDBOOK_TRAIN_OFFSET_DAYS} days after "
        "simulator.start_date, where the handbook puts it in its world (2018-07-25 in the default world)",
    )
    train_days: int = Field(7, ge=1, description="days of training transactions")
    delay_days: int = Field(
        7, ge=0, description="days between training and test (labels of the training days arrive)"
    )
    test_days: int = Field(7, ge=1, description="days of test transactions")
    top_k: int = Field(100, ge=1, description="k of card precision@k (cards checked per day)")


class ModelParams(Section):
    """XGBoost hyperparameters of the final model (the prequential search may override them).

    The defaults are what the prequential search (`SearchSettings.grid`, 4 weekly folds,
    validation folds only, never the test week) chose on the default world, on the pipeline's
    features and on the handbook's per-transaction features alike: depth 7, eta 0.05 had the
    best mean validation AP (0.669 +- 0.020 on the pipeline's features, vs 0.651 for the
    earlier depth 3, eta 0.1). See bench/results/train_quality.json (`candidates_table`).
    """

    n_estimators: int = Field(100, ge=1, description="boosting rounds")
    max_depth: int = Field(7, ge=1, le=20)
    learning_rate: float = Field(0.05, gt=0, le=1)
    min_child_weight: float = Field(1.0, ge=0)
    subsample: float = Field(1.0, gt=0, le=1)
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    scale_pos_weight: float = Field(
        1.0, gt=0, description="weight of the fraud class (1: none; ~genuine/fraud ratio: balanced)"
    )
    tree_method: Literal["hist", "approx", "exact"] = "hist"
    max_bin: int = Field(
        4096, ge=2, description="histogram bins per feature (hist): fine bins find sharp amount thresholds"
    )
    n_jobs: int = Field(2, ge=1, description="threads; results are reproducible for a fixed value")
    seed: int = Field(0, ge=0)


_SEARCHABLE = set(ModelParams.model_fields) - {"tree_method", "n_jobs", "seed"}


class SearchSettings(Section):
    """Prequential hyperparameter search (the handbook's `prequential_grid_search`).

    Fold i trains `train_days` days and validates on `test_days` days, shifted back by
    `fold_shift_days * i`; fold 0 validates on the final training window itself, so no
    fold touches the delay or test days and every label it uses is known at training time.
    """

    enabled: bool = Field(False, description="run the search before fitting the final model")
    n_folds: int = Field(4, ge=1)
    fold_shift_days: int = Field(7, ge=1)
    select_by: Metric = Field("average_precision", description="validation metric to maximise")
    grid: dict[str, list[float]] = Field(
        default_factory=lambda: {
            "max_depth": [3, 5, 7],
            "learning_rate": [0.05, 0.1, 0.3],
            "scale_pos_weight": [1.0, 5.0],
        },
        description="ModelParams field -> candidate values; every combination is tried",
    )

    @field_validator("grid")
    @classmethod
    def _known_params(cls, grid: dict[str, list[float]]) -> dict[str, list[float]]:
        unknown = sorted(set(grid) - _SEARCHABLE)
        if unknown:
            raise ValueError(f"unknown or unsearchable parameters {unknown}; use {sorted(_SEARCHABLE)}")
        empty = sorted(k for k, v in grid.items() if not v)
        if empty:
            raise ValueError(f"parameters without candidate values: {empty}")
        return grid


class GateSettings(Section):
    """The validation gate: absolute minimums and no regression against the champion."""

    min_auc_roc: float = Field(0.80, ge=0, le=1)
    min_average_precision: float = Field(0.50, ge=0, le=1)
    min_card_precision_at_k: float = Field(0.20, ge=0, le=1)
    tolerance_auc_roc: float = Field(
        0.005, ge=0, description="how far below the champion (same test set) a challenger may be"
    )
    tolerance_average_precision: float = Field(0.01, ge=0)
    tolerance_card_precision_at_k: float = Field(0.01, ge=0)

    def minimum(self, metric: str) -> float:
        return float(getattr(self, f"min_{metric}"))

    def tolerance(self, metric: str) -> float:
        return float(getattr(self, f"tolerance_{metric}"))


class TrainingSettings(Section):
    """Settings of training, evaluation and the promotion gate."""

    feature_set: str = Field(
        "snapshot_v1", min_length=1,
        description="the model's input, a set declared in features/feature_sets.py: snapshot_v1 "
        "(request-time and daily snapshot features; every scorer serves it) or snapshot_fresh_v1 "
        "(also the fresh event-time features of gold.fresh_features: batch scorer only for now; "
        "the nightly then builds them)",
    )
    protocol: ProtocolSettings = Field(default_factory=ProtocolSettings)
    model: ModelParams = Field(default_factory=ModelParams)
    search: SearchSettings = Field(default_factory=SearchSettings)
    gate: GateSettings = Field(default_factory=GateSettings)

