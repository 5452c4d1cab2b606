"""The nightly pipeline on a tiny simulated world: real landing files, real Delta, real Feast
(SQLite online store), a real MLflow registry, real GX gates.

One world for the module; the tests run in order (each builds on the days the previous ones ran):
no champion yet (score skipped), a champion (predictions), a re-run (identical, no duplicates),
a failing gate (stops there, nothing downstream), the fix (resume at the failed stage).
"""

from __future__ import annotations

from datetime import date

import pytest

from cardscore.core import catalog
from cardscore.core.config import load_settings
from cardscore.core.pipeline import FAILED, SKIPPED, SUCCEEDED
from cardscore.core.runner import execute, exit_code
from cardscore.core.stage import EXIT_ALERT, JobContext, job_context
from cardscore.jobs.nightly.pipeline import NIGHTLY

D1, D2, D3, D4 = (date(2018, 4, d) for d in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def world_home(tmp_path_factory: pytest.TempPathFactory):
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.simulator import generate_world
    from cardscore.simulator.landing import write_landing

    home = tmp_path_factory.mktemp("nightly") / "home"
    params = SimulatorSettings(n_customers=40, n_terminals=80, n_days=5, radius=20.0, seed=3,
                               compromised_terminals_per_day=1, compromised_customers_per_day=1)
    settings = load_settings(overrides={"home": str(home), "simulator": params.model_dump(mode="json"),
                                        "pipeline": {"retry": {"max_attempts": 1}}})
    write_landing(generate_world(params), settings.landing_root)
    return home


def job(spark, home, **overrides) -> JobContext:
    settings = load_settings(overrides={"home": str(home), "pipeline": {"retry": {"max_attempts": 1}}, **overrides})
    return job_context(settings, spark)


def run_nightly(ctx: JobContext, days, **kwargs):
    """The nightly composition through the runner, as `cardscore nightly` runs it."""
    return execute(NIGHTLY, ctx, days, **kwargs)


def statuses(result) -> dict[str, str]:
    return {r.stage: r.status for r in result.records}


def snapshot_days(ctx: JobContext) -> set[date]:
    return {r.snapshot_date for r in ctx.lake.read(catalog.CUSTOMER_FEATURES).select("snapshot_date").distinct().collect()}


def predictions(ctx: JobContext, day: date):
    df = ctx.lake.read(ctx.settings.scoring.output_table).where(f"tx_date = DATE'{day.isoformat()}'")
    return df.toPandas().sort_values("transaction_id").reset_index(drop=True)


def rare_fraud_booster():
    """A small model over the model's features whose scores look like a fraud model's (mean of a
    few percent): the predictions gate rejects days averaging implausibly high scores."""
    import numpy as np
    import xgboost as xgb

    from cardscore.features.definitions import MODEL_FEATURES

    rng = np.random.default_rng(5)
    x = rng.random((500, len(MODEL_FEATURES))) * 100
    y = (x[:, 0] > 95).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(MODEL_FEATURES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 2, "seed": 5, "nthread": 1}, data, 10)


def test_stage_order() -> None:
    assert [s.name for s in NIGHTLY.steps] == ["ingest", "features", "materialize", "fresh_features", "score", "monitor",
                                                 "retrain"]


def test_nights_without_a_champion_publish_features_and_skip_scoring(spark, world_home) -> None:
    ctx = job(spark, world_home)
    results = run_nightly(ctx, [D1, D2])

    assert [statuses(r)["score"] for r in results] == [SKIPPED, SKIPPED]
    assert all(statuses(r)[s] == SUCCEEDED for r in results for s in ("ingest", "features", "materialize"))
    assert exit_code(NIGHTLY, results) == 0
    # every night builds the next day's snapshot (D1's, built too, is empty: nothing before it)
    assert snapshot_days(ctx) == {D2, D3}
    silver_days = {r.tx_date for r in ctx.lake.read(catalog.SILVER_TRANSACTIONS).select("tx_date").distinct().collect()}
    assert silver_days == {D1, D2}
    ledger = results[1].records
    assert [r.stage for r in ledger][:5] == ["ingest", "features", "materialize", "fresh_features", "score"]
    # The default model input reads no fresh features: the night does not build them.
    assert [statuses(r)["fresh_features"] for r in results] == [SKIPPED, SKIPPED]
    assert not ctx.lake.exists(catalog.FRESH_FEATURES)


def test_with_a_champion_the_night_scores_and_a_rerun_is_identical(spark, world_home) -> None:
    from tests.scoring.world import register

    ctx = job(spark, world_home)
    version = register(ctx.settings, rare_fraud_booster())

    first = run_nightly(ctx, [D2], from_stage="score")[0]  # earlier stages are done
    assert statuses(first)["ingest"] == "done-before"
    assert statuses(first)["score"] == SUCCEEDED
    assert next(r for r in first.records if r.stage == "score").outcome.model_version == version
    before = predictions(ctx, D2)
    silver = ctx.lake.read(catalog.SILVER_TRANSACTIONS).where("tx_date = DATE'2018-04-02'").count()
    assert len(before) == silver > 0
    assert set(before["model_version"]) == {version}

    again = run_nightly(ctx, [D2], force=True)[0]
    assert all(statuses(again)[s] == SUCCEEDED for s in ("ingest", "features", "materialize", "score", "monitor"))
    monitored = ctx.lake.read(catalog.MONITORING).where("day = DATE'2018-04-02'").count()
    assert monitored > 0, "the monitoring stage recorded the night"
    after = predictions(ctx, D2)
    assert after["transaction_id"].is_unique and len(after) == len(before)
    assert after[["transaction_id", "score", "model_version"]].equals(before[["transaction_id", "score", "model_version"]])


def test_a_failed_gate_stops_the_night_and_the_next_run_resumes_there(spark, world_home) -> None:
    broken = job(spark, world_home, ingest={"gate": {"mean_amount_max": 1.0}})  # every day fails
    failed = run_nightly(broken, [D3, D4])

    assert len(failed) == 1, "a range stops at the first failed day"
    assert statuses(failed[0]) == {"ingest": FAILED}
    assert "silver_transactions" in failed[0].failed.error
    assert exit_code(NIGHTLY, failed) == 1
    ctx = job(spark, world_home)
    assert ctx.lake.read(catalog.SILVER_TRANSACTIONS).where("tx_date = DATE'2018-04-03'").count() == 0
    assert D4 not in snapshot_days(ctx), "nothing downstream of the failed gate was published"
    assert predictions(ctx, D3).empty

    fixed = run_nightly(ctx, [D3])[0]
    assert statuses(fixed)["ingest"] == SUCCEEDED and statuses(fixed)["score"] == SUCCEEDED
    assert D4 in snapshot_days(ctx)
    assert len(predictions(ctx, D3)) == ctx.lake.read(catalog.SILVER_TRANSACTIONS).where(
        "tx_date = DATE'2018-04-03'").count()

    resumed = run_nightly(ctx, [D3])[0]  # everything done: nothing runs again
    assert set(statuses(resumed).values()) <= {"done-before", SKIPPED}
    assert statuses(resumed)["retrain"] in ("done-before", SKIPPED)  # the trigger is off by default


def test_a_failed_predictions_gate_publishes_no_predictions_and_resumes_at_score(spark, world_home) -> None:
    strict = job(spark, world_home, scoring={"gate": {"max_mean_score": 0.0}})  # any score fails
    failed = run_nightly(strict, [D4])[0]

    assert [(r.stage, r.status) for r in failed.records] == [
        ("ingest", SUCCEEDED), ("features", SUCCEEDED), ("materialize", SUCCEEDED), ("fresh_features", SKIPPED),
        ("score", FAILED)
    ], "monitoring never ran after the failed gate"
    assert "predictions" in failed.failed.error
    ctx = job(spark, world_home)
    assert predictions(ctx, D4).empty

    fixed = run_nightly(ctx, [D4])[0]
    assert [statuses(fixed)[s] for s in ("ingest", "features", "materialize")] == ["done-before"] * 3
    assert statuses(fixed)["score"] == SUCCEEDED
    assert len(predictions(ctx, D4)) == ctx.lake.read(catalog.SILVER_TRANSACTIONS).where(
        "tx_date = DATE'2018-04-04'").count()


def test_a_fresh_feature_set_makes_the_night_build_the_days_fresh_features(spark, world_home) -> None:
    ctx = job(spark, world_home, training={"feature_set": "snapshot_fresh_v1"})
    night = run_nightly(ctx, [D4], from_stage="fresh_features")[0]

    assert statuses(night)["fresh_features"] == SUCCEEDED
    silver = ctx.lake.read(catalog.SILVER_TRANSACTIONS).where("tx_date = DATE'2018-04-04'").count()
    assert ctx.lake.read(catalog.FRESH_FEATURES).where("tx_date = DATE'2018-04-04'").count() == silver > 0
    assert statuses(night)["score"] in (SUCCEEDED, "done-before")


def test_alert_exit_code_is_distinct_from_failure() -> None:
    from cardscore.core.pipeline import DayResult, StageOutcome, StageRecord
    from cardscore.core.stage import EXIT_FAILED
    from cardscore.jobs.monitor.stage import SPEC as MONITOR

    alert = StageOutcome(alerts=[{"metric": "psi", "feature": "tx_amount"}])
    result = DayResult(D1, "run", [StageRecord("monitor", SUCCEEDED, 1, 0.1, alert)])
    assert exit_code(NIGHTLY, [result]) == EXIT_ALERT  # the night published its data
    assert exit_code(MONITOR, [result]) == EXIT_FAILED  # `cardscore run monitor` alone
    assert exit_code(NIGHTLY, [DayResult(D1, "run", [StageRecord("monitor", SUCCEEDED, 1, 0.1, StageOutcome())])]) == 0
