"""The Prometheus rules, checked by the real promtool: `promtool check rules` on every rule file,
`promtool test rules` on every unit-test file, and every alert has a unit test in which it fires,
a runbook that exists and names it, and a dashboard panel that exists."""

from __future__ import annotations

import json

import yaml

from tests.deploy.tools import DEPLOY, REPO, explain, promtool, run

RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "cardscore.json"


def alerts() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_every_rule_file() -> None:
    assert RULES and TESTS
    checked = run([promtool(), "check", "rules", *map(str, RULES)])
    assert checked.returncode == 0, explain(checked)
    assert checked.stdout.count("SUCCESS") == len(RULES), explain(checked)


def test_promtool_unit_tests_pass() -> None:
    tested = run([promtool(), "test", "rules", *map(str, TESTS)])
    assert tested.returncode == 0, explain(tested)
    assert tested.stdout.count("SUCCESS") == len(TESTS), explain(tested)


def test_every_rule_file_is_unit_tested_and_every_alert_fires_in_a_test() -> None:
    tested_files = {(path.parent / f).resolve() for path in TESTS for f in yaml.safe_load(path.read_text())["rule_files"]}
    assert tested_files == {p.resolve() for p in RULES}
    fired = {case["alertname"] for path in TESTS for test in yaml.safe_load(path.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert {a["alert"] for a in alerts()} == fired


def test_every_alert_names_a_runbook_that_names_it_and_a_dashboard_panel() -> None:
    panels = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    for alert in alerts():
        annotations = alert["annotations"]
        runbook = REPO / annotations["runbook"]
        assert runbook.is_file(), f"{alert['alert']}: {runbook} does not exist"
        assert alert["alert"] in runbook.read_text(), f"{runbook.name} does not name {alert['alert']}"
        assert annotations["dashboard_panel"] in panels, f"{alert['alert']}: no panel {annotations['dashboard_panel']!r}"
        assert alert["labels"]["severity"] in ("page", "ticket", "info")
