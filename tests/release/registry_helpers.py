"""Registry helpers of the release tests."""

from __future__ import annotations

import json
from pathlib import Path

from cardscore.core import registry
from cardscore.core.config import Settings
from cardscore.features.definitions import MODEL_FEATURES


def unloadable_version(settings: Settings, tmp_path: Path) -> str:
    """A registered version (gate passed) whose artifacts are gone: a broken artifact store,
    a deleted run. Loading it fails."""
    c = registry.client(settings)
    mv = c.create_model_version(settings.mlflow.model_name, source=(tmp_path / "gone" / "model").as_uri(),
                                tags={registry.TAG_GATE: "passed",
                                      registry.TAG_FEATURE_NAMES: json.dumps(list(MODEL_FEATURES))})
    return str(mv.version)
