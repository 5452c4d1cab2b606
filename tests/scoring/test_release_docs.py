"""The release commands of the README and of the release runbook, run as written, in order,
against the scoring world (real engine, registry, lake): each must succeed, and the state
they leave is checked."""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path

from typer.testing import CliRunner

from cardscore.cli import app
from cardscore.core import registry, release
from cardscore.core.config import load_settings
from cardscore.core.logs import configure_logging
from tests.deploy.cli import command_lines
from tests.scoring import world

REPO = Path(__file__).resolve().parents[2]
ALERT_EXIT = {"run monitor"}  # exit 1 when the day has any alert (documented)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end > 0 else None]


def _commands(markdown: str) -> list[str]:
    return command_lines("\n".join(re.findall(r"```bash\n(.*?)```", markdown, re.S)))


def _world(scoring_world, tmp_path: Path) -> tuple[object, dict[str, str], str, str]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "CARDSCORE__HOME": str(scoring_world.settings.home_path),
        "CARDSCORE__SCORING__OUTPUT_TABLE": f"gold.predictions_{suffix}",
        "CARDSCORE__MLFLOW__MODEL_NAME": f"docs-{suffix}",
        "CARDSCORE__MONITORING__OUTPUT_TABLE": f"ops.monitoring_{suffix}",
        "CARDSCORE__MONITORING__REPORTS_DIR": str(tmp_path / "reports"),
        "USER": "on-call",
    }
    settings = load_settings(overrides={"home": env["CARDSCORE__HOME"],
                                        "scoring": {"output_table": env["CARDSCORE__SCORING__OUTPUT_TABLE"]},
                                        "mlflow": {"model_name": env["CARDSCORE__MLFLOW__MODEL_NAME"]}})
    champion = world.register(settings, scoring_world.booster)
    challenger = world.register(settings, world.other_booster(11), promote=False)
    registry.set_challenger(settings, challenger, actor="tests")
    return settings, env, champion, challenger


def _run(lines: list[str], env: dict[str, str], after=None) -> None:
    cli = CliRunner()
    variables = {"DAY": world.DAY.isoformat(), "REASON": "runbook drill"}
    for line in lines:
        argv = shlex.split(re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], line))[1:]
        result = cli.invoke(app, argv, env=env)
        configure_logging()  # the command bound its log handler to the runner's closed stream
        allowed = {0, 1} if " ".join(argv[:2]) in ALERT_EXIT else {0}
        assert result.exit_code in allowed, f"`{line}` exited {result.exit_code}: {result.output[-2000:]}"
        if after:
            after(line)


def test_the_release_runbook_runs_as_written(spark, scoring_world, tmp_path) -> None:
    settings, env, champion, _challenger = _world(scoring_world, tmp_path)
    lines = _commands((REPO / "docs" / "runbooks" / "release-freeze.md").read_text())
    assert any("freeze" in c for c in lines) and any("run score" in c for c in lines)
    frozen_scores = []

    def check(line: str) -> None:
        if "run score" in line and release.read_state(settings).frozen:
            from cardscore.core.lake import Lake

            frozen_scores.append(world.predictions(Lake(spark, settings), settings, world.DAY))

    _run(lines, env, check)
    (frozen,) = frozen_scores
    assert frozen["fallback"].all() and (frozen["arm"] == "fallback").all()
    view = release.read_view(settings)
    assert view.champion == champion and not view.state.frozen  # promoted, then rolled back
    actions = [e["action"] for e in reversed(release.history(settings))]
    assert actions == ["shadow", "canary", "canary", "abort", "canary", "promote", "freeze", "unfreeze"]
    assert all(e["by"] == "on-call" and e["reason"] == "runbook drill" for e in release.history(settings))
    assert (tmp_path / "reports" / world.DAY.isoformat() / "report.html").exists()


def test_the_readme_release_commands_run_as_written(spark, scoring_world, tmp_path) -> None:
    settings, env, _champion, challenger = _world(scoring_world, tmp_path)
    lines = _commands(_section((REPO / "README.md").read_text(), "## Safe model releases"))
    assert len(lines) >= 6
    _run(lines, env)
    view = release.read_view(settings)
    assert view.champion == challenger and not view.state.frozen and view.state.canary is None
    assert release.history(settings, limit=1)[0]["action"] == "unfreeze"
