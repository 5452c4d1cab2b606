"""The batch scorer serving a release, on the embedded engine with real models in a real
registry: a canary on a share of the cards (sticky by the card's hash), the shadow recorded
beside the served score, the kill switch serving the flagged rules; the predictions gate
passes every time."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from cardscore.core import release
from cardscore.core.config import load_settings
from cardscore.core.stage import job_context
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.jobs.score_batch.stage import score_day
from cardscore.model.fallback import FALLBACK_VERSION, fallback_scores
from cardscore.model.release import in_canary
from tests.scoring import world


def test_batch_scorer_serves_canary_shadow_and_fallback(spark, scoring_world) -> None:
    settings = load_settings(overrides={
        "home": str(scoring_world.settings.home_path),
        "scoring": {"output_table": f"gold.predictions_{uuid.uuid4().hex[:8]}"},
        "mlflow": {"model_name": f"release-{uuid.uuid4().hex[:8]}"},  # this test moves aliases
    })
    job = job_context(settings, spark)
    champion = world.register(settings, scoring_world.booster)
    candidate_booster = world.other_booster(11)
    candidate = world.register(settings, candidate_booster, promote=False)
    release.start_shadow(settings, candidate, actor="tests", reason="watch")
    release.set_canary(settings, 30, candidate, actor="tests", reason="30% of cards")
    salt = release.read_state(settings).salt

    silver = world.silver_day(scoring_world.transactions, world.DAY)
    features = world.training_path_features(spark, settings, silver).set_index("transaction_id")
    x = features[list(MODEL_FEATURES)].to_numpy(np.float64)
    champion_scores = pd.Series(scoring_world.booster.inplace_predict(x).astype(np.float64), index=features.index)
    candidate_scores = pd.Series(candidate_booster.inplace_predict(x).astype(np.float64), index=features.index)

    report = score_day(job, world.DAY)
    out = world.predictions(job.lake, settings, world.DAY).set_index("transaction_id")
    canary = in_canary(out["customer_id"].to_numpy(), salt, 30)
    assert "passed" in report.gate  # the predictions gate, with the release columns
    assert 0 < canary.sum() < len(out) and report.arms == {"canary": int(canary.sum()),
                                                           "champion": int((~canary).sum())}
    assert (out["arm"][canary] == "canary").all() and (out["arm"][~canary] == "champion").all()
    assert (out["model_version"][canary] == candidate).all() and (out["model_version"][~canary] == champion).all()
    ids = out.index
    # Served: the card's arm's model. Recorded beside it: the other model (never served).
    served = np.where(canary, candidate_scores.loc[ids], champion_scores.loc[ids])
    recorded = np.where(canary, champion_scores.loc[ids], candidate_scores.loc[ids])
    assert np.abs(out["score"].to_numpy() - served).max() < 1e-9
    assert np.abs(out["shadow_score"].to_numpy() - recorded).max() < 1e-9
    assert (out["shadow_model_version"][canary] == champion).all()
    assert (out["shadow_model_version"][~canary] == candidate).all()
    assert not out["fallback"].any()
    # Sticky: every card's transactions are on one arm.
    assert (out.groupby("customer_id")["arm"].nunique() == 1).all()

    release.freeze(settings, actor="tests", reason="kill switch drill")
    frozen = score_day(job, world.DAY)
    out = world.predictions(job.lake, settings, world.DAY).set_index("transaction_id")
    assert "passed" in frozen.gate
    assert frozen.arms == {"fallback": len(silver)} and frozen.model_version == FALLBACK_VERSION
    assert out["fallback"].all() and (out["arm"] == "fallback").all()
    assert (out["model_version"] == FALLBACK_VERSION).all() and out["shadow_score"].isna().all()
    rules = fallback_scores(features.loc[out.index, list(MODEL_FEATURES)].to_numpy(np.float64),
                            settings.release.fallback)
    assert np.abs(out["score"].to_numpy() - rules).max() < 1e-12

    release.unfreeze(settings, actor="tests", reason="drill over")
    release.abort(settings, actor="tests", reason="done")
    release.stop_shadow(settings, actor="tests", reason="done")
    back = score_day(job, world.DAY)
    out = world.predictions(job.lake, settings, world.DAY)
    assert back.arms == {"champion": len(silver)} and (out["model_version"] == champion).all()
    assert out["shadow_score"].isna().all()


def test_a_champion_that_cannot_be_loaded_is_replaced_by_the_flagged_rules(spark, scoring_world, tmp_path) -> None:
    from cardscore.core import registry
    from tests.release.registry_helpers import unloadable_version

    settings = load_settings(overrides={
        "home": str(scoring_world.settings.home_path),
        "scoring": {"output_table": f"gold.predictions_{uuid.uuid4().hex[:8]}"},
        "mlflow": {"model_name": f"broken-{uuid.uuid4().hex[:8]}"},
    })
    world.register(settings, scoring_world.booster)  # creates the registered model
    broken = unloadable_version(settings, tmp_path)
    registry.promote(settings, actor="tests", reason="broken artifacts", version=broken)

    report = score_day(job_context(settings, spark), world.DAY)
    out = world.predictions(job_context(settings, spark).lake, settings, world.DAY)
    assert "passed" in report.gate and report.model_version == FALLBACK_VERSION
    assert "champion unavailable" in report.release["fallback_reason"]
    assert len(out) == len(world.silver_day(scoring_world.transactions, world.DAY))  # nothing lost
    assert out["fallback"].all() and (out["model_version"] == FALLBACK_VERSION).all()
