"""The batch scorer end to end on the embedded engine: real Delta tables, the real Feast
retrieval, a real model from a real MLflow registry, a real GX gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cardscore.core.errors import MissingInput
from cardscore.core.stage import StageCall
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.jobs.score_batch.stage import (
    SPEC,
    PredictionsGateFailed,
    ScoreHooks,
    score_day,
    score_days,
)
from cardscore.schemas.contracts import PREDICTION_RECORD
from tests.scoring import world
from tests.scoring.conftest import settings_for_test

RUN_COLUMNS = ["scored_at", "run_id"]  # the only columns a re-run may change


def _job(spark, settings):
    from cardscore.core.stage import job_context

    return job_context(settings, spark)


def test_a_rerun_replaces_the_day_with_identical_predictions(job, scoring_world) -> None:
    settings, lake = job.settings, job.lake
    silver = world.silver_day(scoring_world.transactions, world.DAY)

    first = score_day(job, world.DAY)
    other_day = score_day(job, world.NEXT_DAY)
    before = world.predictions(lake, settings, world.DAY)
    next_before = world.predictions(lake, settings, world.NEXT_DAY)
    second = score_day(job, world.DAY)
    after = world.predictions(lake, settings, world.DAY)

    assert first.rows == second.rows == len(silver) == first.silver_rows
    assert len(after) == len(silver) and after["transaction_id"].is_unique
    assert sorted(after["transaction_id"]) == sorted(silver["transaction_id"])
    assert set(after["run_id"]) == {second.run_id} != {first.run_id}  # replaced, not appended
    pd.testing.assert_frame_equal(before.drop(columns=RUN_COLUMNS), after.drop(columns=RUN_COLUMNS))
    # The other day's partition is left exactly as it was.
    assert other_day.rows == len(world.silver_day(scoring_world.transactions, world.NEXT_DAY))
    pd.testing.assert_frame_equal(next_before, world.predictions(lake, settings, world.NEXT_DAY))
    assert lake.read(settings.scoring.output_table).count() == first.rows + other_day.rows
    assert second.output_version > other_day.output_version > first.output_version
    assert lake.history(settings.scoring.output_table)[0]["version"] == second.output_version
    # The table follows the prediction_record contract, names and types.
    schema = lake.read(settings.scoring.output_table).schema
    expected = PREDICTION_RECORD.spark_schema()
    assert [(f.name, f.dataType) for f in schema.fields] == [(f.name, f.dataType) for f in expected.fields]


def test_batch_scores_equal_the_training_path(job, spark, scoring_world) -> None:
    """Skew check: the batch scorer's scores equal the booster on the features training gets
    (`historical_features`, pandas) for the same transactions."""
    report = score_day(job, world.DAY)
    published = world.predictions(job.lake, job.settings, world.DAY)
    silver = world.silver_day(scoring_world.transactions, world.DAY)
    training = world.training_path_features(spark, job.settings, silver)
    expected = scoring_world.booster.inplace_predict(training[list(MODEL_FEATURES)].to_numpy(np.float64))
    by_id = pd.Series(expected.astype(np.float64), index=training["transaction_id"].to_numpy())

    assert report.model_version == scoring_world.version
    assert (published["model_version"] == scoring_world.version).all()
    diff = np.abs(published["score"].to_numpy() - by_id.loc[published["transaction_id"]].to_numpy())
    assert diff.max() < 1e-9
    assert published["score"].nunique() > 10  # a real model, not a constant


def test_unknown_entities_are_flagged_as_the_stream_scorer_does(job, scoring_world) -> None:
    """Unknown = absent from the day's snapshot (read here straight from gold); the snapshot
    date is the day unless both entities are unknown."""
    from cardscore.core import catalog

    score_day(job, world.DAY)
    published = world.predictions(job.lake, job.settings, world.DAY).set_index("transaction_id")
    day = world.DAY.isoformat()
    customers = {
        r[0] for r in job.lake.read(catalog.CUSTOMER_FEATURES)
        .where(f"snapshot_date = DATE'{day}'").select("customer_id").collect()
    }
    terminals = {
        r[0] for r in job.lake.read(catalog.TERMINAL_FEATURES)
        .where(f"snapshot_date = DATE'{day}'").select("terminal_id").collect()
    }
    assert (published["unknown_customer"] == ~published["customer_id"].isin(customers)).all()
    assert (published["unknown_terminal"] == ~published["terminal_id"].isin(terminals)).all()
    both = published["unknown_customer"] & published["unknown_terminal"]
    assert published.loc[both, "feature_snapshot_date"].isna().all()
    assert (published.loc[~both, "feature_snapshot_date"] == world.DAY).all()
    # The hand-made rows: both unknown, customer unknown, terminal unknown (at 00:00:00).
    assert tuple(published.loc[900_000_001, ["unknown_customer", "unknown_terminal"]]) == (True, True)
    assert tuple(published.loc[900_000_002, ["unknown_customer", "unknown_terminal"]]) == (True, False)
    assert tuple(published.loc[900_000_003, ["unknown_customer", "unknown_terminal"]]) == (False, True)
    assert published.loc[900_000_003, "event_time"] == pd.Timestamp(day)


def test_the_version_resolved_at_start_is_used_even_if_the_alias_moves(spark, scoring_world) -> None:
    """The champion moves to another model between the alias lookup and the load: every row
    of both days still carries, and is scored by, the version resolved at job start."""
    from cardscore.core import registry

    # The other model may score high: the plausibility bound is not what this test is about.
    settings = settings_for_test(scoring_world.settings, gate={"max_mean_score": 1.0})
    settings.mlflow.model_name = f"moving-{settings.scoring.output_table[-8:]}"
    registry.clear_caches()
    old = world.register(settings, scoring_world.booster)
    new_booster = world.other_booster()
    moved: list[str] = []

    def promote_another(ref) -> None:
        assert ref.version == old
        moved.append(world.register(settings, new_booster))  # registered and promoted

    job = _job(spark, settings)
    reports = score_days(job, [world.DAY, world.NEXT_DAY], hooks=ScoreHooks(after_model_resolved=promote_another))

    assert registry.resolve_alias(settings).version == moved[0] != old
    published = world.predictions(job.lake, settings)
    assert set(published["model_version"]) == {old}
    assert {r.model_version for r in reports} == {old}
    silver = scoring_world.transactions[scoring_world.transactions["tx_date"].isin([world.DAY, world.NEXT_DAY])]
    features = world.training_path_features(spark, settings, silver)
    matrix = features[list(MODEL_FEATURES)].to_numpy(np.float64)
    old_scores = pd.Series(scoring_world.booster.inplace_predict(matrix).astype(np.float64),
                           index=features["transaction_id"].to_numpy())
    new_scores = pd.Series(new_booster.inplace_predict(matrix).astype(np.float64),
                           index=features["transaction_id"].to_numpy())
    ids = published["transaction_id"].to_numpy()
    assert np.abs(published["score"].to_numpy() - old_scores.loc[ids].to_numpy()).max() < 1e-9
    assert np.abs(published["score"].to_numpy() - new_scores.loc[ids].to_numpy()).max() > 1e-3

    # The next run resolves the alias again and picks the new champion.
    again = score_day(job, world.DAY)
    assert again.model_version == moved[0]


def test_a_failing_gate_leaves_the_published_day_untouched(job) -> None:
    table = job.settings.scoring.output_table
    score_day(job, world.DAY)
    version = job.lake.version(table)
    published = world.predictions(job.lake, job.settings, world.DAY)

    def plant_bad_row(df):  # a duplicated transaction with an impossible score
        from pyspark.sql import functions as F

        return df.unionByName(df.limit(1).withColumn("score", F.lit(1.5)))

    with pytest.raises(PredictionsGateFailed) as failed:
        score_day(job, world.DAY, hooks=ScoreHooks(before_stage=plant_bad_row))

    message = str(failed.value)
    assert failed.value.exit_code == 1
    names = {f.expectation for f in failed.value.result.failed}
    assert names == {
        "expect_table_row_count_to_equal",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
    }
    assert "expect_column_values_to_be_unique(transaction_id)" in message
    assert failed.value.staging in message
    assert job.lake.version(table) == version
    pd.testing.assert_frame_equal(published, world.predictions(job.lake, job.settings, world.DAY))
    # The staged rows are kept for inspection.
    staged = job.spark.read.parquet(failed.value.staging)
    assert staged.count() == len(published) + 1


def test_no_champion_is_a_missing_input_and_a_skipped_nightly_stage(spark, scoring_world) -> None:
    from cardscore.core import registry

    settings = settings_for_test(scoring_world.settings)
    settings.mlflow.model_name = "never-trained"
    registry.clear_caches()
    job = _job(spark, settings)

    with pytest.raises(MissingInput) as missing:
        score_day(job, world.DAY)
    assert "champion" in str(missing.value)
    assert "train" in str(missing.value) and "promote" in str(missing.value)
    assert missing.value.exit_code == 1

    outcome = SPEC.run(StageCall(job, (world.DAY,), {"if_no_model": "skip"}))  # the nightly's option
    assert outcome.status == "skipped" and "promote" in outcome.message
    with pytest.raises(MissingInput):  # the stage alone fails, as `cardscore run score` does
        SPEC.run(StageCall(job, (world.DAY,), SPEC.default_options()))
    assert not job.lake.exists(settings.scoring.output_table)


def test_missing_inputs_are_named(job) -> None:
    from datetime import timedelta

    before_gold = world.FIRST_SNAPSHOT - timedelta(days=1)  # silver exists, no snapshot built
    with pytest.raises(MissingInput, match=f"no feature snapshot for {before_gold}.*run features"):
        score_day(job, before_gold)
    after_silver = world.NEXT_DAY + timedelta(days=1)
    with pytest.raises(MissingInput, match=f"no transactions on {after_silver}.*ingest"):
        score_day(job, after_silver)
    assert not job.lake.exists(job.settings.scoring.output_table)


def test_the_stage_reports_versions_and_counts(job, scoring_world) -> None:
    outcome = SPEC.run(StageCall(job, (world.DAY,)))
    silver = world.silver_day(scoring_world.transactions, world.DAY)
    assert outcome.status == "succeeded"
    assert outcome.model_version == scoring_world.version
    assert outcome.details["rows"] == outcome.details["silver_rows"] == len(silver)
    assert outcome.details["unknown_customers"] >= 2  # the two hand-made new customers
    assert outcome.details["defaults_only"] >= 1
    assert outcome.inputs["silver.transactions"] == job.lake.version("silver.transactions")
    assert outcome.outputs[job.settings.scoring.output_table] == job.lake.version(
        job.settings.scoring.output_table
    )
    assert "passed" in outcome.details["gate"]
    assert outcome.inputs.keys() == {"silver.transactions", "gold.customer_features", "gold.terminal_features"}


def test_a_model_with_other_inputs_is_refused(spark, scoring_world) -> None:
    """A champion trained on other features (here: the same ones in another order) would score
    garbage silently; the scorer refuses it before reading anything."""
    import xgboost as xgb

    from cardscore.core import registry
    from cardscore.core.errors import StageFailed

    settings = settings_for_test(scoring_world.settings)
    settings.mlflow.model_name = f"reordered-{settings.scoring.output_table[-8:]}"
    registry.clear_caches()
    reordered = list(reversed(MODEL_FEATURES))
    rng = np.random.default_rng(3)
    data = xgb.DMatrix(rng.random((50, len(reordered))), label=rng.integers(0, 2, 50), feature_names=reordered)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, data, num_boost_round=2)
    world.register(settings, booster)

    with pytest.raises(StageFailed, match=r"expects features .*no declared feature set") as refused:
        score_day(_job(spark, settings), world.DAY)
    assert not isinstance(refused.value, MissingInput)
    assert not _job(spark, settings).lake.exists(settings.scoring.output_table)
