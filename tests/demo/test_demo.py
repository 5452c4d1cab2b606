"""`cardscore demo` (the README's first command) end to end on a tiny world that starts in
another year than the handbook's, as a user runs it: a subprocess with its own engine and broker,
real everything (the run is tests/demo/conftest.py's `demo_run`, its world tests/demo/world.py)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.demo.world import CLI, DEMO_DAYS, LAST_DAY, DemoRun

pytestmark = pytest.mark.engine  # the whole demo: engine, broker, registry


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resets_its_workspace(demo_run: DemoRun) -> None:
    out, workspace = demo_run.output, demo_run.workspace
    assert not demo_run.stale.exists(), "the previous run's workspace was reset"
    assert "train on 2024-02-28 + 2 days, test to 2024-03-02" in out  # placed in this world
    assert "8/8 stream == batch" in out and "EQUAL" in out
    assert "promoted to champion" in out
    assert "to the DLQ" in out and "3 to the DLQ" in out  # the demo's three broken messages
    for expected in ("rows per table", "Great Expectations gates", "where to look", "handbook XGBoost"):
        assert expected in out, expected
    assert (workspace / "gx" / "uncommitted" / "data_docs" / "local_site" / "offline.html").is_file()
    assert (workspace / "demo.log").stat().st_size > 0
    profile = yaml.safe_load(demo_run.profile.read_text())
    assert profile["home"] == "." and profile["simulator"]["n_days"] == DEMO_DAYS
    # The user's settings and the day the demo trained on: commands repeat what it did.
    assert profile["training"]["protocol"]["train_start"] == "2024-02-28"
    assert profile["monitoring"] == {"label_delay_days": 1} and profile["kafka"] == {"partitions": 2}

    # The workspace profile points every command at the demo's state afterwards.
    runs = subprocess.run(
        [CLI, "--config", str(demo_run.profile), "runs", "--date", LAST_DAY.isoformat(), "--json"],
        capture_output=True, text=True, timeout=300, env=demo_run.env(), cwd=demo_run.home,
    )
    assert runs.returncode == 0, runs.stderr[-2000:]
    stages = [yaml.safe_load(line)["stage"] for line in runs.stdout.splitlines() if line.startswith("{")]
    assert stages[:5] == ["ingest", "features", "materialize", "fresh_features", "score"]
