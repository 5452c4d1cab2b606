"""One real `cardscore demo` run, shared by the demo's tests and by the clients that look at
what it made (Feast's CLI and UI, MLflow's model server, Data Docs, the monitoring report)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests.demo.world import CLI, DEMO_DAYS, TINY, DemoRun, venv_env


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """`cardscore --config cardscore.yaml demo --days 16 --rate 0`, as a user runs it."""
    folder = tmp_path_factory.mktemp("demo")
    home = folder / "home"
    config = folder / "cardscore.yaml"
    config.write_text(yaml.safe_dump({"home": str(home), **TINY}))
    stale = home / "demo" / "left-over-from-last-run"
    stale.mkdir(parents=True)
    done = subprocess.run(
        [CLI, "--config", str(config), "demo", "--days", str(DEMO_DAYS), "--rate", "0"],
        capture_output=True, text=True, timeout=900, env=venv_env(), cwd=folder,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    yield DemoRun(home, home / "demo", home / "demo" / "cardscore.yaml", output, stale)
