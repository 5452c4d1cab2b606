"""The stream scorer's release watcher on a real MLflow registry: what it serves after each
transition, the kill switch within one poll, a champion that cannot be loaded."""

from __future__ import annotations

import numpy as np
import pytest

from cardscore.core import registry, release
from cardscore.core.config import load_settings
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.model.fallback import FALLBACK_VERSION
from cardscore.streaming.release import ModelUnavailable, ReleaseWatcher
from tests.release.registry_helpers import unloadable_version
from tests.scoring import world

pytestmark = pytest.mark.engine  # a real MLflow registry


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_watcher_follows_the_release_and_falls_back(tmp_path) -> None:
    settings = load_settings(overrides={"home": str(tmp_path / "home")})
    clock = Clock()
    watcher = ReleaseWatcher(settings, poll_seconds=5.0, threads=1, clock=clock)
    with pytest.raises(ModelUnavailable, match="no champion"):
        watcher.refresh(force=True)

    v1 = world.register(settings, world.other_booster(1))
    v2 = world.register(settings, world.other_booster(2), promote=False)
    assert watcher.refresh(force=True) and watcher.current.version == v1
    x, cards = np.random.default_rng(0).random((400, len(MODEL_FEATURES))) * 100, np.arange(400)

    release.set_canary(settings, 50, v2, actor="tests")
    assert not watcher.refresh()  # not due: one registry read per poll interval
    clock.now += 5.0
    assert watcher.refresh()
    scored = watcher.current.score(x, cards)
    assert set(scored.model_version) == {v1, v2} and set(scored.arm) == {"champion", "canary"}

    release.freeze(settings, actor="tests", reason="drill")
    clock.now += 5.0
    assert watcher.refresh() and watcher.current.version == FALLBACK_VERSION  # within one poll
    assert watcher.current.score(x, cards).fallback.all()
    release.unfreeze(settings, actor="tests", reason="drill over")
    clock.now += 5.0
    assert watcher.refresh() and set(watcher.current.score(x, cards).model_version) == {v1, v2}

    # A new champion that cannot be loaded: a running scorer keeps serving what it has.
    broken = unloadable_version(settings, tmp_path)
    registry.promote(settings, actor="tests", reason="broken", version=broken)
    clock.now += 5.0
    assert not watcher.refresh() and watcher.current.version == v1
    # A scorer that starts now has nothing else: the flagged rules serve.
    fresh = ReleaseWatcher(settings, poll_seconds=5.0)
    assert fresh.refresh(force=True) and fresh.current.version == FALLBACK_VERSION
    assert "champion unavailable" in fresh.current.plan.fallback_reason
    assert fresh.current.score(x, cards).fallback.all()


def _guarded_settings(tmp_path, **criteria):
    return load_settings(overrides={"home": str(tmp_path / "home"),
                                    "release": {"criteria": {"stream_min_batches": 3, **criteria}}})


def test_the_stream_guard_aborts_a_canary_that_breaches_its_latency_bound(tmp_path) -> None:
    from cardscore.streaming.metrics import StreamMetrics

    settings = _guarded_settings(tmp_path, p99_latency_seconds=1e-9)  # any real call breaches it
    v1 = world.register(settings, world.other_booster(1))
    v2 = world.register(settings, world.other_booster(2), promote=False)
    release.set_canary(settings, 50, v2, actor="alice", reason="ramp")
    clock, metrics = Clock(), StreamMetrics()
    watcher = ReleaseWatcher(settings, poll_seconds=1.0, clock=clock, metrics=metrics)
    assert watcher.refresh(force=True)
    x, cards = np.random.default_rng(1).random((200, len(MODEL_FEATURES))) * 100, np.arange(200)
    for _ in range(3):
        watcher.current.score(x, cards)
    canary_scores = metrics.registry.get_sample_value("cardscore_stream_release_scores_total", {"arm": "canary"})
    assert canary_scores == 3 * int((watcher.current.score(x, cards).arm == "canary").sum())

    clock.now += 1.0
    assert watcher.refresh()  # judged, aborted, and the aborted release read back
    state = release.read_state(settings)
    assert state.canary is None and state.aborted.version == v2
    assert state.aborted.by == settings.release.automation_actor and "canary predict p99" in state.aborted.reason
    assert set(watcher.current.score(x, cards).model_version) == {v1}
    assert metrics.registry.get_sample_value("cardscore_stream_release_breaches_total") == 1


def test_a_canary_the_stream_cannot_load_is_aborted(tmp_path) -> None:
    settings = _guarded_settings(tmp_path)
    v1 = world.register(settings, world.other_booster(1))
    broken = unloadable_version(settings, tmp_path)
    release.set_canary(settings, 10, broken, actor="alice", reason="ramp")
    watcher = ReleaseWatcher(settings, poll_seconds=1.0, clock=Clock())
    assert watcher.refresh(force=True) and watcher.current.version == v1
    state = release.read_state(settings)
    assert state.canary is None and state.aborted.version == broken and "cannot be loaded" in state.aborted.reason


def test_one_rule_picks_what_a_scorer_serves_for_its_alias(tmp_path) -> None:
    """The stream scorer and the scoring API both ask `serving_watcher`: the champion alias serves
    the release, another alias (a side scorer) that alias's version alone."""
    from cardscore.model.served_release import ReleaseWatcher as SharedReleaseWatcher
    from cardscore.model.served_release import serving_watcher
    from cardscore.model.watcher import ModelWatcher

    settings = load_settings(overrides={"home": str(tmp_path / "home")})
    champion = serving_watcher(settings, registry.CHAMPION, 5.0, 1, metrics=None, log_prefix="serve",
                               scorer="scoring API")
    side = serving_watcher(settings, "challenger", 5.0, 1, metrics=None, log_prefix="serve", scorer="scoring API")
    assert isinstance(champion, SharedReleaseWatcher) and champion.alias == registry.CHAMPION
    assert isinstance(side, ModelWatcher) and side.alias == "challenger"
