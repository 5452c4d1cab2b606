"""The CLI: --help everywhere, config errors exit 2 naming the key, services report status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from cardscore.cli import app

BIN = Path(sys.executable).parent


def all_commands(group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if getattr(command, "commands", None) is not None:
            yield from all_commands(command, (*prefix, name))


def test_every_command_has_help() -> None:
    runner = CliRunner()
    commands = list(all_commands(get_command(app)))
    assert ("engine", "start") in commands and ("broker", "status") in commands and ("demo",) in commands
    for path in commands:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "usage" in result.output.lower()  # click's, or the stage parser's (argparse)


def test_config_errors_exit_2_and_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "cardscore.yaml"
    bad.write_text("engine:\n  mdoe: embedded\n")
    proc = subprocess.run([str(BIN / "cardscore"), "--config", str(bad), "config", "check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "engine.mdoe: unknown key" in proc.stderr


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    conf = tmp_path / "cardscore.yaml"
    conf.write_text("kafka:\n  client:\n    sasl.password: ${env:PW}\n")
    proc = subprocess.run([str(BIN / "cardscore"), "--config", str(conf), "config", "show"],
                          capture_output=True, text=True, timeout=60, env={"PW": "topsecret", "PATH": "/usr/bin"})
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["kafka"]["client"]["sasl.password"] == "***"
    assert "topsecret" not in proc.stdout + proc.stderr


@pytest.mark.engine  # starts the embedded broker
def test_broker_start_status_stop(tmp_path: Path) -> None:
    from cardscore.services.broker import free_port

    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()),
           "CARDSCORE__HOME": str(tmp_path), "CARDSCORE__KAFKA__EMBEDDED_PORT": str(free_port())}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "cardscore"), *args], capture_output=True, text=True, timeout=60, env=env)

    assert cli("broker", "status").returncode == 1
    try:
        assert cli("broker", "start").returncode == 0
        assert cli("broker", "status").returncode == 0
        created = cli("topics", "create")
        assert created.returncode == 0, created.stderr
        assert "cardscore.transactions: 4 partitions (created)" in created.stderr
        assert "cardscore.transactions: 4 partitions (exists)" in cli("topics", "create").stderr
    finally:
        assert cli("broker", "stop").returncode == 0
    assert cli("broker", "status").returncode == 1
