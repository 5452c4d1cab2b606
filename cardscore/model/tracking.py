"""What an MLflow training run records beyond metrics: code version, pinned requirements,
the model signature, the experiment and the Delta inputs' lineage."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature

    from cardscore.core.config import Settings

# Packages the pyfunc flavour needs to load and run the booster, pinned to what trained it.
MODEL_REQUIREMENTS = ("mlflow", "xgboost", "numpy", "pandas", "scipy")
REPO_DIR = Path(__file__).resolve().parents[2]


def code_version() -> str:
    """The git commit of the code (with `-dirty` if files differ), else the package version."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return f"{commit}-dirty" if status else commit
    except (OSError, subprocess.SubprocessError):
        try:
            return f"cardscore=={metadata.version('cardscore')}"
        except metadata.PackageNotFoundError:
            return "unknown"


def pip_requirements() -> list[str]:
    """Exact versions of the packages the logged model needs (never the logging env's guess)."""
    out = []
    for name in MODEL_REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def model_signature(feature_names: Sequence[str]) -> ModelSignature:
    """Inputs: every feature as float64 (nullable counts must accept floats and NaN);
    output: one float32 fraud probability per row."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec

    inputs = Schema([ColSpec(DataType.double, name) for name in feature_names])
    outputs = Schema([TensorSpec(np.dtype("float32"), (-1,))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(frame: pd.DataFrame, feature_names: Sequence[str], rows: int = 1) -> pd.DataFrame:
    """Model inputs as the model takes them (float64, in feature order), logged with the model:
    MLflow saves `serving_input_example.json`, a request body `mlflow models serve` accepts."""
    return frame.loc[:, list(feature_names)].head(rows).astype("float64").reset_index(drop=True)


def ensure_experiment(settings: Settings) -> str:
    """The experiment's id, created with the configured artifact location if new."""
    from cardscore.core.registry import client

    c = client(settings)
    name = settings.mlflow.experiment
    found = c.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(c.create_experiment(name, artifact_location=settings.mlflow_artifact_location))


def log_delta_inputs(tables: dict[str, dict[str, object]]) -> None:
    """Record each Delta table read (URI and version) as an MLflow dataset input of the run."""
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    for name, meta in tables.items():
        version = meta.get("version")
        source = DeltaDatasetSource(
            path=str(meta["uri"]), delta_table_version=int(version) if version is not None else None
        )
        mlflow.log_input(MetaDataset(source, name=f"{name}@v{version}"), context="training")
