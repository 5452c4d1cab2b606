"""A champion that reads the fresh features, scored by the batch scorer (issue 19): served from
gold.fresh_features by transaction id, equal to the booster on the offline values, refused
with the command to run when a day's fresh rows are missing."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from cardscore.core import catalog, registry
from cardscore.core.errors import MissingInput
from cardscore.features.feature_sets import SNAPSHOT_FRESH_V1
from cardscore.jobs.fresh_features.stage import fresh_features_day
from cardscore.jobs.score_batch.stage import score_day
from tests.scoring import world
from tests.scoring.conftest import settings_for_test


def test_a_fresh_champion_is_served_the_offline_fresh_rows_and_refused_without_them(spark, scoring_world) -> None:
    from cardscore.core.stage import job_context

    settings = settings_for_test(scoring_world.settings)
    settings.mlflow.model_name = f"fresh-{uuid.uuid4().hex[:8]}"
    registry.clear_caches()
    job = job_context(settings, spark)
    fresh_features_day(job, world.DAY)  # the day scored; NEXT_DAY's rows are never built here
    booster = world.fresh_booster()
    version = world.register(settings, booster)

    report = score_day(job, world.DAY)
    published = world.predictions(job.lake, settings, world.DAY)
    assert report.model_version == version and report.inputs[catalog.FRESH_FEATURES] is not None

    # Expected: the booster on the training path's snapshot features and the table's fresh rows.
    silver = world.silver_day(scoring_world.transactions, world.DAY)
    snapshot = world.training_path_features(spark, settings, silver)
    fresh = job.lake.read(catalog.FRESH_FEATURES).where(f"tx_date = DATE'{world.DAY}'").toPandas()
    rows = snapshot.merge(fresh, on="transaction_id", how="inner", validate="one_to_one")
    assert len(rows) == len(silver) == len(published)
    assert rows[world.FRESH_DRIVER].nunique() > 2  # the day really has fresh activity to serve
    expected = booster.inplace_predict(rows[list(SNAPSHOT_FRESH_V1.features)].to_numpy(np.float64))
    by_id = pd.Series(expected.astype(np.float64), index=rows["transaction_id"].to_numpy())
    diff = np.abs(published["score"].to_numpy() - by_id.loc[published["transaction_id"]].to_numpy())
    assert diff.max() < 1e-9
    assert published["score"].nunique() > 2

    with pytest.raises(MissingInput, match=rf"run `cardscore run fresh_features --date {world.NEXT_DAY}` first"):
        score_day(job, world.NEXT_DAY)
    assert job.lake.read(settings.scoring.output_table).where(f"tx_date = DATE'{world.NEXT_DAY}'").count() == 0


def test_monitoring_profiles_the_fresh_columns_of_a_fresh_model(spark, scoring_world) -> None:
    """Monitoring's feature rows (reference and drift) carry the fresh features exactly as the
    table holds them, and refuse days without rows like the scorer."""
    from cardscore.core.stage import job_context
    from cardscore.features.fresh import FRESH_FEATURE_NAMES
    from cardscore.features.fresh_serving import FreshRowsMissing
    from cardscore.monitoring.reference import features_of_days

    job = job_context(settings_for_test(scoring_world.settings), spark)
    fresh_features_day(job, world.DAY)
    rows = features_of_days(job, world.DAY, world.DAY, list(SNAPSHOT_FRESH_V1.features))
    table = (job.lake.read(catalog.FRESH_FEATURES).where(f"tx_date = DATE'{world.DAY}'")
             .select("transaction_id", *FRESH_FEATURE_NAMES).toPandas()
             .sort_values("transaction_id").reset_index(drop=True))
    assert len(rows) == len(world.silver_day(scoring_world.transactions, world.DAY))
    pd.testing.assert_frame_equal(rows[["transaction_id", *FRESH_FEATURE_NAMES]], table, check_dtype=False)
    with pytest.raises(FreshRowsMissing, match="fresh_features --date 2018-04-16"):
        features_of_days(job, world.NEXT_DAY, world.NEXT_DAY, list(SNAPSHOT_FRESH_V1.features))
