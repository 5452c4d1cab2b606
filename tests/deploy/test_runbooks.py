"""The on-call runbooks (docs/runbooks): one per situation the operations kit alerts on; each
names the alerts that send you there and dashboard panels that exist, and every `cardscore ...`
command it gives is accepted by the real CLI (parsed by the Typer application: sub-commands,
options, types, required values)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.deploy import cli
from tests.deploy.tools import DEPLOY, REPO

RUNBOOKS = REPO / "docs" / "runbooks"
PAGES = ("nightly-failed", "stream-lag", "dlq-spike", "drift-alert", "model-rollback", "outage", "backfill",
         "release-freeze")
ALERTS = {rule["alert"] for path in (DEPLOY / "prometheus" / "rules").glob("*.yml")
          for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
PANELS = {p["title"] for p in json.loads((DEPLOY / "grafana" / "cardscore.json").read_text())["panels"]}


def page(name: str) -> str:
    return (RUNBOOKS / f"{name}.md").read_text()


@pytest.mark.parametrize("name", PAGES)
def test_each_runbook_names_its_alerts_its_panels_and_commands(name: str) -> None:
    text = page(name)
    alerts_line = next(line for line in text.splitlines() if line.startswith("**Alert"))
    named = set(re.findall(r"`(Cardscore\w+)`", alerts_line))
    assert named and named <= ALERTS, f"{name}: alerts {named - ALERTS} do not exist"
    dashboard_line = next(line for line in text.splitlines() if line.startswith("**Dashboard"))
    panels = set(re.findall(r"\*([^*]+)\*", dashboard_line.replace("**Dashboard**", "")))
    assert panels and panels <= PANELS, f"{name}: panels {panels - PANELS} do not exist"
    assert cli.markdown_commands(text), f"{name} gives no command"


@pytest.mark.parametrize("name", ["README", *PAGES])
def test_every_cardscore_command_is_accepted_by_the_cli(name: str) -> None:
    for line in cli.markdown_commands(page(name)):
        try:
            path, _ = cli.parse(cli.argv_of(line))
        except Exception as exc:  # the CLI's UsageError, with its message
            pytest.fail(f"{name}: `{line}` is refused: {exc}")
        assert path, f"{name}: `{line}` names no command"


def test_the_index_links_every_runbook_and_every_alert_has_one() -> None:
    index = page("README")
    for name in PAGES:
        assert f"({name}.md)" in index
    assert set(re.findall(r"Cardscore\w+", index)) >= ALERTS, sorted(ALERTS - set(re.findall(r"Cardscore\w+", index)))


def test_the_parser_refuses_what_the_cli_refuses() -> None:
    for bad in ("cardscore nightly --dat 2018-05-01", "cardscore rollback", "cardscore runs",
                "cardscore dlq replay --max-replays 0", "cardscore nope"):
        with pytest.raises(Exception, match=r"(?i)option|missing|command|greater|invalid"):
            cli.parse(cli.argv_of(bad))
