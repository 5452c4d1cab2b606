"""What the demo points people to, read in a real headless Chromium without internet: the Data
Docs index and the monitoring report (a screenshot of each is left in the test's folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.demo.world import LAST_DAY, DemoRun
from tests.support.browser import render

pytestmark = pytest.mark.engine  # the demo's workspace


def test_the_data_docs_the_demo_points_to_read_offline(demo_run: DemoRun, tmp_path: Path) -> None:
    from cardscore.core.config import load_settings
    from cardscore.demo import where_to_look

    site = demo_run.workspace / "gx" / "uncommitted" / "data_docs" / "local_site"
    pointed = where_to_look(load_settings(demo_run.profile), demo_run.profile, LAST_DAY)
    assert pointed["Great Expectations Data Docs"] == str(site / "offline.html")
    index = render((site / "offline.html").as_uri(), tmp_path, "data-docs-offline")
    # The site holds GX's full runs: the features gates (Data Docs on every run) and the day's
    # landing gate; a passing silver or predictions gate is decided by the aggregate pass and
    # recorded in the run ledger instead (README, "Gates").
    for suite in ("landing_day", "gold_customer_features", "gold_terminal_features"):
        assert suite in index.text, suite
    assert "validation results" in index.text and " 0 failed" in index.text
    assert index.text.count("passed") >= 8
    # Its links lead to rendered validation pages that read offline too.
    link = re.search(r'href="(validations/gold_customer_features/[^"]+\.html)"', index.dom)
    assert link, index.dom[:3000]
    page = render((site / link.group(1)).as_uri(), tmp_path, "data-docs-validation")
    assert "Expectation Validation Result" in page.text and "Succeeded" in page.text
    assert "Evaluated Expectations" in page.text


def test_the_monitoring_report_reads_right_in_a_browser(demo_run: DemoRun, tmp_path: Path) -> None:
    """Freshness says "ahead" for the inputs the night builds for tomorrow, and the performance
    chart labels each scored day once (it showed each day twice with sub-day ticks)."""
    report = demo_run.workspace / "monitoring" / LAST_DAY.isoformat() / "report.html"
    page = render(report.as_uri(), tmp_path, "monitoring-report", height=4200)
    assert f"Monitoring {LAST_DAY}" in page.text
    freshness = page.text[page.text.index("Freshness"):page.text.index("Delayed-label performance")]
    assert not re.search(r"\s-1\s", freshness), freshness  # was "-1" under "days behind"
    assert re.search(r"features \d{4}-\d\d-\d\d 1 day ahead", freshness), freshness
    assert re.search(r"materialized \d{4}-\d\d-\d\d 1 day ahead", freshness), freshness
    assert "silver_transactions 2024-03-06 up to date" in freshness

    performance = page.dom[page.dom.index("Delayed-label performance"):]
    svg = performance[performance.index("<svg"):performance.index("</svg>")]
    ticks = re.findall(r"<text[^>]*>\s*(\d\d-\d\d)\s*</text>", svg)
    per_chart = len(ticks) // 3  # AP, CP@k, AUC: one axis each
    assert ticks and len(ticks) % 3 == 0, ticks
    assert len(set(ticks[:per_chart])) == per_chart, f"day labels repeat: {ticks[:per_chart]}"
    assert {"03-04", "03-05", "03-06"} <= set(ticks), ticks
