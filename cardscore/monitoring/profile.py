"""The reference profile of a model: what "normal" looked like when it was trained.

Saved with each training run as two MLflow artifacts of the model's run:

* `reference/profile.json`: per feature (and for the score) the reference's quantile bin
  edges and proportions (PSI), mean, std, min, max and null rate; per-class score
  histograms on fixed [0, 1] bins (the report's picture); the window it describes;
* `reference/sample.parquet`: a uniform sample of the rows (features, score, label) for KS.

`build_profile` is pure (pandas in, profile out); `save_to_run` adds it to the model's (finished)
run: the training job does so right after registering a version
(`jobs.monitor.save_reference_of_version`), and the monitoring job does so the first time it
meets a version registered before profiles existed (its cache).

The reference describes the run's **test days, every transaction of them**, scored
out-of-sample by the model: the state production is compared against. Not the training days
(in-sample scores, and further back in time) and not the training job's test set (which drops
the cards already known compromised, so it under-represents active cards: on a small world
that alone gave feature PSI up to 0.49 on stationary days, against 0.19 for the full days).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cardscore.monitoring import stats

if TYPE_CHECKING:
    from cardscore.core.config import Settings

FORMAT_VERSION = 1
ARTIFACT_DIR = "reference"
PROFILE_FILE = "profile.json"
SAMPLE_FILE = "sample.parquet"
SCORE = "score"
LABEL = "label"


@dataclass(frozen=True)
class DistributionProfile:
    """One numeric column of the reference."""

    edges: list[float]  # inner quantile edges (right-closed bins)
    proportions: list[float]  # len(edges) + 1
    mean: float | None
    std: float | None
    minimum: float | None
    maximum: float | None
    null_rate: float

    @classmethod
    def of(cls, values: np.ndarray, bins: int) -> DistributionProfile:
        x = np.asarray(values, dtype=np.float64)
        finite = x[~np.isnan(x)]
        edges = stats.quantile_edges(finite, bins)
        empty = finite.size == 0
        return cls(
            edges=edges,
            proportions=stats.bin_proportions(finite, edges),
            mean=None if empty else float(finite.mean()),
            std=None if empty else float(finite.std()),
            minimum=None if empty else float(finite.min()),
            maximum=None if empty else float(finite.max()),
            null_rate=stats.null_rate(x),
        )


@dataclass
class ReferenceProfile:
    """Feature and score distributions of a model's reference window."""

    window: dict[str, str]  # source (test|train), first, last
    rows: int
    frauds: int
    features: dict[str, DistributionProfile]
    score: DistributionProfile | None
    score_histogram: dict[str, list[float]]  # edges, genuine, fraud (proportions per class)
    run_id: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"reference profile format {data.get('format_version')} is not {FORMAT_VERSION}")
        return cls(
            window=dict(data["window"]),
            rows=int(data["rows"]),
            frauds=int(data["frauds"]),
            features={k: DistributionProfile(**v) for k, v in data["features"].items()},
            score=DistributionProfile(**data["score"]) if data.get("score") else None,
            score_histogram={k: list(v) for k, v in data["score_histogram"].items()},
            run_id=data.get("run_id"),
            created_at=data["created_at"],
            format_version=int(data["format_version"]),
        )


@dataclass
class Reference:
    """A profile and its sample, as the monitoring job uses them."""

    profile: ReferenceProfile
    sample: pd.DataFrame  # feature columns, score, label
    source: str = "artifact"  # artifact | computed


def build_profile(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    *,
    window: dict[str, str],
    score: str = SCORE,
    label: str = LABEL,
    bins: int = 10,
    histogram_bins: int = 20,
    sample_size: int = 5000,
    seed: int = 0,
) -> Reference:
    """The profile of `frame` (one row per transaction: the features, the model's score and the
    0/1 label) and a uniform sample of at most `sample_size` rows."""
    missing = [c for c in [*feature_names, score, label] if c not in frame.columns]
    if missing:
        raise KeyError(f"the reference frame lacks columns {missing}")
    y = frame[label].to_numpy().astype(bool)
    s = frame[score].to_numpy(dtype=np.float64)
    edges = np.linspace(0.0, 1.0, histogram_bins + 1)
    profile = ReferenceProfile(
        window=dict(window),
        rows=len(frame),
        frauds=int(y.sum()),
        features={n: DistributionProfile.of(frame[n].to_numpy(dtype=np.float64), bins) for n in feature_names},
        score=DistributionProfile.of(s, bins),
        score_histogram={
            "edges": [float(e) for e in edges],
            "genuine": stats.histogram(s[~y], edges),
            "fraud": stats.histogram(s[y], edges),
        },
    )
    columns = [*feature_names, score, label]
    sample = frame[columns] if len(frame) <= sample_size else frame[columns].sample(sample_size, random_state=seed)
    sample = sample.rename(columns={score: SCORE, label: LABEL}).reset_index(drop=True)
    sample[LABEL] = sample[LABEL].astype("int8")
    return Reference(profile, sample, "built")


def _write(reference: Reference, folder: Path) -> Path:
    out = folder / ARTIFACT_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / PROFILE_FILE).write_text(json.dumps(reference.profile.to_dict(), indent=1))
    # Spark Connect's toPandas leaves PlanMetrics objects in `attrs` (pyspark 4.2, when the server
    # reports metrics: JVM Spark does, Sail does not); pyarrow would store attrs as JSON and fail.
    sample = reference.sample.copy(deep=False)
    sample.attrs = {}
    sample.to_parquet(out / SAMPLE_FILE, index=False)
    return out


def save_to_run(settings: Settings, run_id: str, reference: Reference) -> None:
    """Add the reference to a finished run (the cache of a profile computed on demand)."""
    from cardscore.core import registry

    reference.profile.run_id = run_id
    with tempfile.TemporaryDirectory() as tmp:
        registry.client(settings).log_artifacts(run_id, str(_write(reference, Path(tmp))), ARTIFACT_DIR)


def load_from_run(settings: Settings, run_id: str) -> Reference | None:
    """The reference saved with a run, or None when it has none."""
    from cardscore.core import registry

    c = registry.client(settings)
    names = {Path(a.path).name for a in c.list_artifacts(run_id, ARTIFACT_DIR)}
    if not {PROFILE_FILE, SAMPLE_FILE} <= names:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(c.download_artifacts(run_id, ARTIFACT_DIR, tmp))
        profile = ReferenceProfile.from_dict(json.loads((local / PROFILE_FILE).read_text()))
        sample = pd.read_parquet(local / SAMPLE_FILE)
    return Reference(profile, sample, "artifact")

