"""The ways people and schedulers run the batch scorer: `python jobs/score_batch/main.py` (as
spark-submit runs it) and `cardscore run score`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from cardscore.cli import app
from cardscore.jobs.score_batch.stage import score_day
from tests.scoring import world
from tests.scoring.conftest import settings_for_test

REPO = Path(__file__).resolve().parents[2]


def _env(settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE")}
    env.update(
        {
            "CARDSCORE__HOME": str(settings.home_path),
            "CARDSCORE__SCORING__OUTPUT_TABLE": settings.scoring.output_table,
            "CARDSCORE__LOGGING__FORMAT": "json",
            **extra,
        }
    )
    return env


def test_the_job_exits_1_on_a_failed_gate_and_publishes_nothing(job) -> None:
    """A real job process whose gate is tightened (a day's mean score above 0 is called
    implausible) stops with exit code 1, names the failed expectation, and leaves the
    published day as it was."""
    table = job.settings.scoring.output_table
    score_day(job, world.DAY)
    version = job.lake.version(table)
    published = world.predictions(job.lake, job.settings, world.DAY)

    proc = subprocess.run(
        [sys.executable, "jobs/score_batch/main.py", "--date", world.DAY.isoformat()],
        cwd=REPO,
        env=_env(job.settings, CARDSCORE__SCORING__GATE__MAX_MEAN_SCORE="0.0"),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "gate predictions: 1 of" in proc.stderr
    assert "expect_column_mean_to_be_between(score)" in proc.stderr
    assert job.lake.version(table) == version
    pd.testing.assert_frame_equal(published, world.predictions(job.lake, job.settings, world.DAY))


def test_cli_scores_a_range_with_one_model_version(spark, scoring_world, tmp_path) -> None:
    settings = settings_for_test(scoring_world.settings)
    picture = tmp_path / "scores.png"
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["run", "score", "--from", world.DAY.isoformat(), "--to", world.NEXT_DAY.isoformat(), "--json",
         "--plot", str(picture)],
        env=_env(settings),
    )
    assert result.exit_code == 0, result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reports = json.loads(result.stdout)
    assert [r["day"] for r in reports] == [world.DAY.isoformat(), world.NEXT_DAY.isoformat()]
    assert {r["model_version"] for r in reports} == {scoring_world.version}
    assert len({r["run_id"] for r in reports}) == 1
    for report in reports:
        silver = world.silver_day(scoring_world.transactions, pd.Timestamp(report["day"]).date())
        assert report["rows"] == report["silver_rows"] == len(silver)


def test_cli_usage_errors_and_help() -> None:
    runner = CliRunner()
    both = runner.invoke(app, ["run", "score", "--date", "2018-04-15", "--from", "2018-04-14", "--to", "2018-04-15"])
    assert both.exit_code == 2
    assert "either --date or --from/--to" in both.output
    helped = runner.invoke(app, ["run", "score", "--help"])
    assert helped.exit_code == 0 and "champion" in helped.output
