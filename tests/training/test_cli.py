"""`cardscore promote`, `rollback` and `models list|show` against a real registry."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from cardscore.cli import app
from cardscore.core.logs import configure_logging
from cardscore.features.feature_sets import SNAPSHOT_FRESH_V1
from cardscore.jobs.train.stage import TrainingParams, train_on_sets
from tests.training.synthetic import FEATURES, training_sets

pytestmark = pytest.mark.engine  # a real MLflow registry


def test_promote_rollback_and_models_commands(training_settings) -> None:
    settings = training_settings
    env = {"CARDSCORE__HOME": str(settings.home_path), "USER": "ops-bot"}
    cli = CliRunner()

    def invoke(args: list[str]):
        result = cli.invoke(app, args, env=env)
        configure_logging()  # the command bound its log handler to the runner's closed stream
        return result

    result = invoke(["promote", "--reason", "nothing yet"])
    assert result.exit_code == 1 and "no challenger to promote" in result.output

    train_on_sets(settings, training_sets(seed=0), TrainingParams(actor="alice"))
    result = invoke(["promote", "--reason", "first champion"])
    assert result.exit_code == 0, result.output
    assert "champion is now v1" in result.output and "ops-bot" in result.output  # $USER by default

    train_on_sets(settings, training_sets(seed=0), TrainingParams(actor="alice"))
    result = invoke(["promote", "--reason", "better", "--actor", "carol"])
    assert result.exit_code == 0 and "v2 (was v1)" in result.output

    listing = invoke(["models", "list"])
    assert listing.exit_code == 0 and "previous-champion" in listing.output and "passed" in listing.output

    result = invoke(["rollback", "--reason", "alert fired", "--actor", "erin"])
    assert result.exit_code == 0 and "champion is now v1 (was v2)" in result.output
    result = invoke(["rollback", "--reason", "again"])
    assert result.exit_code == 1 and "no previous champion" in result.output

    shown = invoke(["models", "show", "2"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    actions = [(t["action"], t["by"], t["reason"]) for t in info["transitions"]]
    assert actions == [("challenger", "alice", "passed the validation gate"),
                       ("promote", "carol", "better"), ("rolled_back", "erin", "alert fired")]
    assert info["aliases"] == [] and info["gate"] == "passed"
    champion = json.loads(invoke(["models", "show"]).stdout)
    assert champion["version"] == "1" and "champion" in champion["aliases"]

    # A champion the online scorers cannot serve (fresh features): promoted, and said so.
    sets = training_sets(seed=0)
    names = list(SNAPSHOT_FRESH_V1.features)

    def widen(frame):
        values = {n: frame[FEATURES[i]] if i < len(FEATURES) else 0.0 for i, n in enumerate(names)}
        return frame.assign(**values)

    fresh = replace(sets, train=widen(sets.train), test=widen(sets.test), feature_names=names)
    report = train_on_sets(settings, fresh, TrainingParams(actor="alice"))
    result = invoke(["promote", "--reason", "fresh features", "--version", report.version, "--force"])
    assert result.exit_code == 0 and f"champion is now v{report.version}" in result.output
    assert "feature set snapshot_fresh_v1" in result.output and "fallback rules" in result.output
    result = invoke(["rollback", "--reason", "batch only for now"])
    assert result.exit_code == 0 and "feature set" not in result.output
