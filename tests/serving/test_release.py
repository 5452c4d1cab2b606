"""The scoring API under a release, over real HTTP, on a real MLflow registry and the real
online store of the serving world: a canary gives each card the arm and score the one serving
plan gives it (`ServingPlan`, what the batch scorer runs and the stream scorer's watcher
serves; tests/scoring/test_stream_release.py ties those two together), the shadow is recorded
and never acted on, `release.freeze` (what `cardscore release freeze` calls) turns every score
into the flagged fallback within a poll, and `unfreeze` restores the release."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from cardscore.core import registry, release
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.model.explain import contributions
from cardscore.model.fallback import FALLBACK_MODEL_NAME, FALLBACK_VERSION, fallback_scores
from cardscore.model.release import build_plan
from tests.release.registry_helpers import unloadable_version
from tests.serving.conftest import RunningApi, ServingWorld, wire
from tests.streaming import world

pytestmark = pytest.mark.engine  # a started server, a registry, fitted models


def _settings(serving_world: ServingWorld):
    # Its own model name: this test moves aliases and release state (the session's champion stays).
    return serving_world.settings(mlflow={"model_name": f"api-release-{uuid.uuid4().hex[:8]}"})


def _wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.02)  # poll interval of the condition


def _score(api: RunningApi, records: list[dict]) -> list[dict]:
    response = api.post([wire(r) for r in records])
    assert response.status_code == 200, response.text
    return response.json()


def _scored_when(api: RunningApi, records: list[dict], served: Callable[[list[dict]], bool], what: str) -> list[dict]:
    """The API's answer once it shows the release (one model poll after the transition)."""
    def attempt() -> list[dict] | None:
        results = _score(api, records)
        return results if served(results) else None

    return _wait_for(attempt, 30, what)


def _assert_as_planned(results: list[dict], records: list[dict], matrix: np.ndarray, settings) -> Any:
    """Each row's served fields equal the plan's for its card (what batch and stream serve)."""
    plan = build_plan(settings, release.read_view(settings))
    cards = np.array([r["customer_id"] for r in records], dtype=np.int64)
    planned = plan.score(matrix, cards)
    for i, result in enumerate(results):
        assert result["arm"] == planned.arm[i]
        assert result["score"] == float(planned.score[i])  # bit for bit: same features, same boosters
        assert result["model_name"] == planned.model_name[i]
        assert result["model_version"] == planned.model_version[i]
        assert result["fallback"] is bool(planned.fallback[i])
        assert result["shadow_model_version"] == planned.shadow_model_version[i]
        shadow = planned.shadow_score[i]
        assert result["shadow_score"] == (None if np.isnan(shadow) else float(shadow))
    return planned


def _assert_explained_by(result: dict, booster, row: np.ndarray) -> None:
    full = contributions(booster, row[None, :])[0]
    order = np.argsort(-np.abs(full[:-1]), kind="stable")[:5]
    assert [c["feature"] for c in result["contributions"]] == [MODEL_FEATURES[j] for j in order]
    assert [c["contribution"] for c in result["contributions"]] == pytest.approx(full[order].tolist())
    logit = math.log(result["score"] / (1 - result["score"]))
    assert result["bias"] + full[:-1].sum() == pytest.approx(logit, abs=1e-4)


def test_canary_shadow_and_freeze_serve_as_the_plan_does(serving_world, serve) -> None:
    settings = _settings(serving_world)
    champion = world.register(settings, world.booster(seed=0))
    candidate = world.register(settings, world.booster(seed=7), promote=False)
    api = serve(settings)
    assert api.wait_ready()["release"]["versions"]["champion"] == champion
    records = world.transactions(80, seed=9, first_id=70_000)
    matrix = world.expected_matrix(records, serving_world.customers, serving_world.terminals)
    champion_booster = registry.load_booster(settings, registry.get_version(settings, champion))
    candidate_booster = registry.load_booster(settings, registry.get_version(settings, candidate))
    champion_scores = _assert_as_planned(_score(api, records), records, matrix, settings).score

    # Shadow: recorded on every row, the served score (the decision) unchanged.
    release.start_shadow(settings, candidate, actor="tests", reason="api shadow")
    results = _scored_when(api, records, lambda r: r[0]["shadow_model_version"] == candidate, "the shadow")
    planned = _assert_as_planned(results, records, matrix, settings)
    assert set(planned.arm) == {"champion"}
    assert [r["score"] for r in results] == champion_scores.tolist()
    assert all(r["shadow_model_version"] == candidate and r["shadow_score"] is not None for r in results)

    # Canary on 40% of the cards: each card's arm and score are the plan's; a canary row is
    # explained by the canary's booster, a champion row by the champion's.
    release.set_canary(settings, 40, candidate, actor="tests", reason="api canary")
    results = _scored_when(api, records, lambda r: any(x["arm"] == "canary" for x in r), "the canary")
    planned = _assert_as_planned(results, records, matrix, settings)
    arms = [r["arm"] for r in results]
    assert set(arms) == {"champion", "canary"}
    for i, result in enumerate(results):
        booster = candidate_booster if result["arm"] == "canary" else champion_booster
        _assert_explained_by(result, booster, matrix[i])
        if result["arm"] == "canary":  # the champion's score is the recorded counterfactual
            assert result["shadow_model_version"] == champion and result["shadow_score"] == champion_scores[i]
        else:
            assert result["score"] == champion_scores[i]
    # Sticky: the same card gets the same arm in another request, alone.
    again = api.post(wire(records[arms.index("canary")]))
    assert again.json()["arm"] == "canary" and again.json()["score"] == results[arms.index("canary")]["score"]
    metrics = api.get("/metrics").text
    assert f'cardscore_serve_release_scores_total{{arm="canary"}} {float(arms.count("canary") + 1)}' in metrics

    # Freeze: every score is the flagged rules' score; ready, saying so.
    frozen_at = time.monotonic()
    release.freeze(settings, actor="tests", reason="api kill switch")
    results = _scored_when(api, records, lambda r: all(x["fallback"] for x in r), "the fallback")
    waited = time.monotonic() - frozen_at
    rules = fallback_scores(matrix, settings.release.fallback)
    for i, result in enumerate(results):
        assert (result["arm"], result["model_name"], result["model_version"]) == (
            "fallback", FALLBACK_MODEL_NAME, FALLBACK_VERSION)
        assert result["score"] == float(rules[i])
        assert (result["contributions"], result["bias"]) == ([], None)
        assert result["shadow_model_version"] is None and result["shadow_score"] is None
    _assert_as_planned(results, records, matrix, settings)
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["release"]["fallback"] is True and ready.json()["release"]["fallback_reason"] == "frozen"
    assert ready.json()["model"]["version"] == FALLBACK_VERSION
    assert "cardscore_serve_fallback 1.0" in api.get("/metrics").text
    print(f"fallback served {waited:.2f} s after the freeze (model poll {settings.serving.model_poll_seconds} s)")

    # Unfreeze: the release as it was (champion + canary + shadow).
    release.unfreeze(settings, actor="tests", reason="api restore")
    results = _scored_when(api, records, lambda r: not any(x["fallback"] for x in r), "the restored release")
    assert [r["arm"] for r in results] == arms
    _assert_as_planned(results, records, matrix, settings)
    assert "cardscore_serve_fallback 0.0" in api.get("/metrics").text


def test_a_champion_that_cannot_be_loaded_serves_the_flagged_fallback(serving_world, serve, tmp_path) -> None:
    settings = _settings(serving_world)
    world.register(settings, world.booster(seed=0), promote=False)  # the registered model exists
    broken = unloadable_version(settings, tmp_path)
    registry.promote(settings, actor="tests", reason="a broken artifact store", version=broken)
    api = serve(settings)
    ready = api.wait_ready()
    assert ready["release"]["fallback"] is True and "champion unavailable" in ready["release"]["fallback_reason"]
    records = world.transactions(10, seed=3, first_id=80_000)
    matrix = world.expected_matrix(records, serving_world.customers, serving_world.terminals)
    results = _score(api, records)
    assert {r["arm"] for r in results} == {"fallback"} and all(r["fallback"] for r in results)
    assert [r["score"] for r in results] == fallback_scores(matrix, settings.release.fallback).tolist()


def test_the_api_aborts_a_canary_that_breaches_its_criteria_by_itself(serving_world, serve) -> None:
    # Any real canary call breaches a p99 bound of 1 ns: after 3 requests with canary rows the
    # API's guard aborts the canary on the registry, and the champion serves every card again.
    settings = serving_world.settings(mlflow={"model_name": f"api-guard-{uuid.uuid4().hex[:8]}"},
                                      release={"criteria": {"stream_min_batches": 3, "p99_latency_seconds": 1e-9}})
    champion = world.register(settings, world.booster(seed=0))
    candidate = world.register(settings, world.booster(seed=7), promote=False)
    release.set_canary(settings, 50, candidate, actor="alice", reason="ramp")
    api = serve(settings)
    assert api.wait_ready()["release"]["versions"]["canary"] == candidate
    records = world.transactions(40, seed=11, first_id=90_000)
    first = _score(api, records)
    assert {r["arm"] for r in first} == {"champion", "canary"}

    def aborted() -> bool:
        _score(api, records)  # each request with canary rows is one judged batch
        return release.read_state(settings).canary is None

    _wait_for(aborted, 60, "the API's automatic abort")
    state = release.read_state(settings)
    assert state.aborted.version == candidate and state.aborted.by == settings.release.automation_actor
    assert state.aborted.reason.startswith("automatic rollback: scoring API: canary predict p99")
    results = _scored_when(api, records, lambda r: all(x["arm"] == "champion" for x in r), "the champion alone")
    assert {r["model_version"] for r in results} == {champion}
    metrics = api.get("/metrics").text
    assert "cardscore_serve_release_breaches_total 1.0" in metrics
