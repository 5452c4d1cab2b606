"""`cardscore release ...` against a real MLflow sqlite registry: the state every scorer reads,
its transitions and their who/why/when records."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cardscore.cli import app
from cardscore.core import registry, release
from cardscore.core.config import load_settings
from cardscore.core.logs import configure_logging
from tests.scoring import world

pytestmark = pytest.mark.engine  # a real MLflow registry


def test_release_commands_walk_a_version_from_shadow_to_champion(tmp_path) -> None:
    settings = load_settings(overrides={"home": str(tmp_path / "home")})
    env = {"CARDSCORE__HOME": str(settings.home_path), "USER": "ops-bot"}
    cli = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = cli.invoke(app, list(args), env=env)
        configure_logging()  # the command bound its log handler to the runner's closed stream
        assert result.exit_code == code, result.output
        return result.output

    assert "no champion" in invoke("release", "status")
    champion = world.register(settings, world.other_booster(1))
    failed = world.register(settings, world.other_booster(3), promote=False)
    registry.client(settings).set_model_version_tag(settings.mlflow.model_name, failed, registry.TAG_GATE, "failed")
    candidate = world.register(settings, world.other_booster(2), promote=False)
    registry.set_challenger(settings, candidate, actor="tests")

    assert "did not pass the validation gate" in invoke("release", "shadow", "--version", failed, code=1)
    assert "no canary to abort" in invoke("release", "abort", "--reason", "x", code=1)
    assert "share must be in (0, 100]" in invoke("release", "canary", "--share", "0", code=1)

    out = invoke("release", "shadow", "--reason", "watch the challenger")
    assert f"shadow v{candidate}" in out and "by ops-bot" in out
    invoke("release", "canary", "--share", "5", "--actor", "alice", "--reason", "first cards")
    first_salt = release.read_state(settings).salt
    invoke("release", "canary", "--share", "25", "--actor", "alice")
    state = json.loads(invoke("release", "status", "--json"))
    assert (state["champion"], state["canary"], state["share"], state["shadow"]) == (champion, candidate, 25.0, candidate)
    assert state["salt"] == first_salt  # a ramp keeps the cards already in the canary
    assert (state["by"], state["action"]) == ("alice", "canary") and state["at"].endswith("Z")
    assert registry.find_alias(settings, release.CANARY_ALIAS).version == candidate  # mirrored for people

    out = invoke("release", "freeze", "--actor", "bob", "--reason", "incident 42")
    assert "FROZEN" in out
    assert "unfreeze` first" in invoke("release", "canary", "--share", "50", code=1)
    status = invoke("release", "status")
    assert "FROZEN" in status and "bob" in status and "incident 42" in status
    invoke("release", "unfreeze", "--actor", "bob", "--reason", "incident over")
    assert release.read_state(settings).canary_active  # the canary is back as it was

    out = invoke("release", "abort", "--actor", "carol", "--reason", "too many alerts")
    state = release.read_state(settings)
    assert (state.canary, state.share, state.shadow) == (None, 0.0, candidate)
    assert (state.aborted.version, state.aborted.by, state.aborted.reason, state.aborted.share) == (
        candidate, "carol", "too many alerts", 25.0)
    assert registry.find_alias(settings, release.CANARY_ALIAS) is None

    invoke("release", "canary", "--share", "100", "--reason", "again")
    out = invoke("release", "promote", "--actor", "dave", "--reason", "canary clean for a week")
    assert f"champion is now v{candidate} (was v{champion})" in out
    view = release.read_view(settings)
    assert view.champion == candidate and view.state.canary is None and view.state.shadow is None

    history = invoke("release", "history", "--limit", "50").splitlines()
    actions = [line.split()[1] for line in history]
    assert actions == ["promote", "canary", "abort", "unfreeze", "freeze", "canary", "canary", "shadow"]
    assert "by carol: too many alerts" in history[2]
    # The version's own record (what `cardscore models show` lists) has the abort too.
    tags = registry.get_version(settings, candidate).tags
    assert any(k.startswith("transition.") and "release_abort" in k for k in tags)
    assert "Usage" in invoke("release", "canary", "--help")
