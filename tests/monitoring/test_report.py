"""The monitoring report's pieces without an engine: the performance chart's day axis and the
freshness wording (the whole page is checked in a browser in tests/demo/test_pages.py)."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pandas as pd
import pytest

from cardscore.monitoring.metrics import MetricRow
from cardscore.monitoring.report import freshness_state, performance_chart


def history(days: int) -> pd.DataFrame:
    first = date(2024, 2, 27)
    rows = [{"metric": metric, "model_version": "1", "scored_day": first + timedelta(days=i),
             "value": 0.5 + i / 100, "threshold": 0.3, "details": json.dumps({"labels_complete": i < days - 1})}
            for metric in ("average_precision", "card_precision_at_k", "auc_roc") for i in range(days)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("days", [1, 3, 9, 30])
def test_the_performance_chart_labels_each_day_once(days: int) -> None:
    svg = performance_chart(history(days))
    assert svg and "<svg" in svg and "<img" not in svg  # text stays text
    every = re.findall(r">\s*(\d\d-\d\d)\s*</text>", svg)
    assert every and len(every) % 3 == 0, every  # three charts (AP, CP@k, AUC) on the same days
    labels = every[: len(every) // 3]
    assert len(labels) == len(set(labels)), labels
    assert len(labels) <= 10
    if days <= 8:
        assert len(labels) == days  # a short window shows every day


def test_freshness_is_said_in_words_ahead_or_behind() -> None:
    def row(value: float | None, **details: object) -> MetricRow:
        return MetricRow("freshness_lag_days", value, "features", 0, details=dict(details))

    assert freshness_state(row(-1.0)) == "1 day ahead"
    assert freshness_state(row(0.0)) == "up to date"
    assert freshness_state(row(3.0)) == "3 days behind"
    assert freshness_state(row(None, missing=True, absent=True)) == "missing"
    assert freshness_state(row(None, missing=False, absent=True)) == "not recorded"
