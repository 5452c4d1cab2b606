"""A model version's reference profile (what its features and scores looked like on its
test or train days): loaded from its training run's artifacts, or computed once from the run's
lineage (silver transactions of the window, their point-in-time features, the booster's
scores, the labels known now) and saved back to the run. Training saves it when it registers
a version; monitoring reads it. The I/O edge of the monitoring library."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cardscore.core import catalog
from cardscore.core.logs import get_logger
from cardscore.monitoring.profile import SCORE, Reference

if TYPE_CHECKING:
    from cardscore.core.registry import ModelRef
    from cardscore.core.stage import JobContext

log = get_logger("cardscore.monitoring.reference")


def reference_of(ctx: JobContext, ref: ModelRef) -> Reference | None:
    """The version's reference: its run's artifacts, or computed from the run's lineage (test
    or train window, as configured) and saved to the run so later days reuse it."""
    from cardscore.monitoring.profile import load_from_run, save_to_run

    if ref.run_id is None:
        return None
    found = load_from_run(ctx.settings, ref.run_id)
    if found is not None:
        return found
    computed = compute_reference(ctx, ref)
    if computed is not None:
        save_to_run(ctx.settings, ref.run_id, computed)
        log.info("monitor.reference_cached", version=ref.version, run_id=ref.run_id,
                 window=computed.profile.window, rows=computed.profile.rows)
    return computed


def save_reference_of_version(ctx: JobContext, version: str) -> Reference | None:
    """Compute and save the reference profile of a just-registered version (called by the
    training job). Errors are logged, never raised: monitoring retries on demand later."""
    from cardscore.core import registry

    try:
        return reference_of(ctx, registry.get_version(ctx.settings, version))
    except Exception as exc:
        log.error("monitor.reference_failed", version=version, error=f"{type(exc).__name__}: {exc}")
        return None


def compute_reference(ctx: JobContext, ref: ModelRef) -> Reference | None:
    """Rebuild a version's reference from its run's `lineage.json` (protocol window): silver
    transactions of the window, their point-in-time features, the booster's scores, the labels
    known now. None when the run has no lineage."""
    from cardscore.core import registry
    from cardscore.model.scoring import predict
    from cardscore.monitoring.profile import build_profile

    client = registry.client(ctx.settings)
    assert ref.run_id is not None
    if "lineage.json" not in {a.path for a in client.list_artifacts(ref.run_id)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        lineage = json.loads(Path(client.download_artifacts(ref.run_id, "lineage.json", tmp)).read_text())
    protocol = lineage["protocol"]
    source = ctx.settings.monitoring.reference_window
    first = date.fromisoformat(protocol[f"{source}_start"])
    last = date.fromisoformat(protocol[f"{source}_end"])
    features = list(ref.feature_names)
    frame = features_of_days(ctx, first, last, features)
    booster = registry.load_booster(ctx.settings, ref)
    frame[SCORE] = predict(booster, frame) if len(frame) else np.empty(0)
    labels = labels_known(ctx, first, None)
    frame["label"] = frame["transaction_id"].isin(labels.loc[labels["is_fraud"], "transaction_id"]).astype("int8")
    cfg = ctx.settings.monitoring
    reference = build_profile(
        frame, features, window={"source": source, "first": first.isoformat(), "last": last.isoformat()},
        bins=cfg.quantile_bins, histogram_bins=cfg.histogram_bins, sample_size=cfg.reference_sample_size,
    )
    reference.source = "computed"
    return reference


def _entity_rows(ctx: JobContext, first: date, last: date):
    from pyspark.sql import functions as F

    return (
        ctx.lake.read(catalog.SILVER_TRANSACTIONS)
        .where((F.col("tx_date") >= F.lit(first)) & (F.col("tx_date") <= F.lit(last)))
        .select("transaction_id", "customer_id", "terminal_id",
                F.col("event_time").alias("event_timestamp"), F.col("amount").cast("double").alias("tx_amount"))
    )


def features_of_days(
    ctx: JobContext, first: date, last: date, features: Sequence[str], fraction: float | None = None,
    scores_of: str | None = None,
) -> pd.DataFrame:
    """Model features of the silver transactions of [first, last], exactly as the batch scorer
    gets them (Feast point-in-time join in the engine); a `fraction` samples rows first. With
    `scores_of` (a predictions table), each row's published score is joined in the engine too
    (rows without one are dropped), so only the sample reaches the driver."""
    from pyspark.sql import functions as F

    from cardscore.features.feature_sets import reads_fresh
    from cardscore.features.fresh_serving import fresh_rows, require_fresh_rows, with_fresh_features
    from cardscore.features.retrieval import historical_features_spark

    entities = _entity_rows(ctx, first, last)
    if fraction is not None and fraction < 1.0:
        entities = entities.sample(fraction=fraction, seed=17)
    served = historical_features_spark(ctx.settings, ctx.spark, entities)
    if reads_fresh(features):  # the model reads gold.fresh_features
        rows = fresh_rows(ctx.lake, first, last, stage="monitor")
        require_fresh_rows(entities, rows, first, last, "monitor")
        served = with_fresh_features(served, rows)
    joined = served.select("transaction_id", *features)
    if scores_of is not None:
        scores = (
            ctx.lake.read(scores_of)
            .where((F.col("tx_date") >= F.lit(first)) & (F.col("tx_date") <= F.lit(last)))
            .select("transaction_id", F.col(SCORE).cast("double").alias(SCORE))
            .dropDuplicates(["transaction_id"])
        )
        joined = joined.join(scores, "transaction_id", "inner")
    frame = joined.toPandas()
    # The engine's row order varies: sorted, a profile (sums, sample) is reproducible.
    return frame.sort_values("transaction_id", kind="mergesort").reset_index(drop=True)


def labels_known(ctx: JobContext, first: date, day: date | None) -> pd.DataFrame:
    """transaction_id, is_fraud of the label reports from `first` to `day` (None: all)."""
    from pyspark.sql import functions as F

    if not ctx.lake.exists(catalog.SILVER_LABELS):
        return pd.DataFrame({"transaction_id": pd.Series(dtype="int64"), "is_fraud": pd.Series(dtype=bool)})
    condition = F.col("reported_date") >= F.lit(first)
    if day is not None:
        condition = condition & (F.col("reported_date") <= F.lit(day))
    labels = ctx.lake.read(catalog.SILVER_LABELS).where(condition).select("transaction_id", "is_fraud").toPandas()
    labels["is_fraud"] = labels["is_fraud"].astype(bool)
    return labels
