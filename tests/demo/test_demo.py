"""`cardscore demo` (the README's first command) end to end on a tiny world, as a user runs
it: a subprocess with its own engine and broker, real everything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.engine  # the whole demo: engine, broker, registry

CLI = str(Path(sys.executable).parent / "cardscore")
TINY = {
    "simulator": {"n_customers": 80, "n_terminals": 160, "radius": 20.0, "seed": 4,
                  "compromised_terminals_per_day": 1, "compromised_customers_per_day": 1,
                  "label_delay_max_days": 1.0},
    # 16 days (the least the demo accepts: 8 days of history before training, 4 of protocol,
    # 1 for the test day's labels to arrive, 3 nightly): train 04-09..04-10, delay 04-11,
    # test 04-12, its labels complete 04-13, nightly 04-14..04-16
    "training": {"protocol": {"train_days": 2, "delay_days": 1, "test_days": 1, "top_k": 10},
                 "gate": {"min_auc_roc": 0.0, "min_average_precision": 0.0, "min_card_precision_at_k": 0.0}},
    "monitoring": {"label_delay_days": 1},
    "kafka": {"partitions": 2},
}


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resets_its_workspace(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tmp_path / "cardscore.yaml"
    config.write_text(yaml.safe_dump({"home": str(home), **TINY}))
    stale = home / "demo" / "left-over-from-last-run"
    stale.mkdir(parents=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    done = subprocess.run(
        [CLI, "--config", str(config), "demo", "--days", "16", "--rate", "0"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]

    workspace = home / "demo"
    assert not stale.exists(), "the previous run's workspace was reset"
    assert "8/8 stream == batch" in out and "EQUAL" in out
    assert "promoted to champion" in out
    assert "to the DLQ" in out and "3 to the DLQ" in out  # the demo's three broken messages
    for expected in ("rows per table", "Great Expectations gates", "where to look", "handbook XGBoost"):
        assert expected in out, expected
    assert (workspace / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    assert (workspace / "demo.log").stat().st_size > 0
    profile = yaml.safe_load((workspace / "cardscore.yaml").read_text())
    assert profile["home"] == "." and profile["simulator"]["n_days"] == 16

    # The workspace profile points every command at the demo's state afterwards.
    runs = subprocess.run(
        [CLI, "--config", str(workspace / "cardscore.yaml"),
         "runs", "--date", "2018-04-16", "--json"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert runs.returncode == 0, runs.stderr[-2000:]
    stages = [yaml.safe_load(line)["stage"] for line in runs.stdout.splitlines() if line.startswith("{")]
    assert stages[:4] == ["ingest", "features", "materialize", "score"]
