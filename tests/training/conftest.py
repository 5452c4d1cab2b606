"""Fixtures of the training tests: settings with a real MLflow sqlite registry in tmp."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardscore.core.config import Settings, load_settings


@pytest.fixture
def training_settings(tmp_path: Path) -> Settings:
    """A per-test home (lake, MLflow sqlite + artifacts) and a gate fitted to the synthetic sets."""
    return load_settings(
        overrides={
            "home": str(tmp_path / "home"),
            "training": {
                "protocol": {"top_k": 20},
                # Small, quick models: the tests check behaviour, not the tuned defaults
                # (those are measured by bench/train_quality.py on the handbook world).
                "model": {"n_estimators": 40, "max_depth": 4, "learning_rate": 0.2, "max_bin": 256},
                "gate": {
                    "min_auc_roc": 0.8,
                    "min_average_precision": 0.35,
                    "min_card_precision_at_k": 0.3,
                },
            },
        }
    )
