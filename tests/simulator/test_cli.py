"""`cardscore simulate` and `cardscore replay` through the real Typer app."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import cardscore.cli  # noqa: F401  (registers every command on the app)
from cardscore.cli.app import app
from cardscore.services.broker import EmbeddedBroker, free_port

from .test_kafka import consume

SMALL_FLAGS = [
    "--customers",
    "60",
    "--terminals",
    "120",
    "--days",
    "12",
    "--radius",
    "20",
    "--seed",
    "4",
]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _config(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "cardscore.yaml"
    path.write_text(yaml.safe_dump({"home": str(tmp_path / "home"), **sections}))
    return path


def test_help_lists_the_flags(runner: CliRunner) -> None:
    result = runner.invoke(app, ["simulate", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for flag in (
        "--customers",
        "--terminals",
        "--days",
        "--start",
        "--radius",
        "--seed",
        "--out",
        "--overwrite",
    ):
        assert flag in result.output
    replay_help = runner.invoke(app, ["replay", "--help"], terminal_width=200)
    assert (
        replay_help.exit_code == 0
        and "--date" in replay_help.output
        and "--rate" in replay_help.output
    )


def test_simulate_then_refuse_then_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    out = tmp_path / "landing"
    first = runner.invoke(
        app,
        ["--config", config, "simulate", *SMALL_FLAGS, "--start", "2019-01-01", "--out", str(out)],
    )
    assert first.exit_code == 0, first.output
    manifest = json.loads((out / "_simulation/manifest.json").read_text())
    assert manifest["parameters"]["n_customers"] == 60
    assert manifest["parameters"]["start_date"] == "2019-01-01"
    assert (out / "transactions/date=2019-01-12/transactions-2019-01-12.jsonl").is_file()
    assert f"{manifest['totals']['transactions']:,}" in first.output  # the summary table
    assert "label files" in first.output

    refused = runner.invoke(
        app, ["--config", config, "simulate", *SMALL_FLAGS, "--seed", "5", "--out", str(out)]
    )
    assert refused.exit_code == 1
    assert "--overwrite" in refused.output

    replaced = runner.invoke(
        app,
        [
            "--config",
            config,
            "simulate",
            *SMALL_FLAGS,
            "--seed",
            "5",
            "--out",
            str(out),
            "--overwrite",
        ],
    )
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "_simulation/manifest.json").read_text())["seed"] == 5


def test_invalid_flags_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["--config", str(_config(tmp_path)), "simulate", "--customers", "0"]
    )
    assert result.exit_code == 2
    assert "n_customers" in result.output


def test_replay_needs_the_embedded_broker_running(runner: CliRunner, tmp_path: Path) -> None:
    config = str(_config(tmp_path, kafka={"mode": "embedded", "embedded_port": free_port()}))
    assert runner.invoke(app, ["--config", config, "simulate", *SMALL_FLAGS]).exit_code == 0
    result = runner.invoke(app, ["--config", config, "replay", "--date", "2018-04-02"])
    assert result.exit_code == 1
    assert "cardscore broker start" in " ".join(result.output.split())  # rich wraps lines


def test_replay_a_day_to_the_topic(
    runner: CliRunner, tmp_path: Path, broker: EmbeddedBroker
) -> None:
    topic, label_topic = f"tx-{uuid.uuid4().hex[:8]}", f"labels-{uuid.uuid4().hex[:8]}"
    config = str(
        _config(
            tmp_path,
            kafka={
                "mode": "external",
                "client": {"bootstrap.servers": broker.bootstrap},
                "partitions": 2,
                "topics": {"transactions": topic, "labels": label_topic},
            },
        )
    )
    assert runner.invoke(app, ["--config", config, "simulate", *SMALL_FLAGS]).exit_code == 0
    landing = tmp_path / "home/lake/landing"
    lines = (
        (landing / "transactions/date=2018-04-10/transactions-2018-04-10.jsonl")
        .read_bytes()
        .splitlines()
    )
    labels = (landing / "labels/date=2018-04-10/labels-2018-04-10.jsonl").read_bytes().splitlines()
    assert labels  # the day has reports, else the labels topic is not tested
    result = runner.invoke(
        app, ["--config", config, "replay", "--date", "2018-04-10", "--rate", "5000"]
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"{len(lines):,} events to {topic} and {len(labels):,} label reports to {label_topic}" in said
    assert sorted(
        m.value() for m in consume(broker.conf, topic, len(lines), group=False)
    ) == sorted(lines)
    assert sorted(
        m.value() for m in consume(broker.conf, label_topic, len(labels), group=False)
    ) == sorted(labels)

    missing = runner.invoke(app, ["--config", config, "replay", "--date", "2017-01-01"])
    assert missing.exit_code == 1 and "cardscore simulate" in " ".join(missing.output.split())
