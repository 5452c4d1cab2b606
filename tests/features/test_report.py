"""The daily picture of the gold snapshots: numbers from the engine, a real PNG."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cardscore.core import catalog
from cardscore.features.report import daily_summary, plot_daily_summary


def test_daily_summary_and_picture(feature_world, tmp_path: Path) -> None:
    first, last = feature_world.first, date(2018, 5, 14)  # two days past the built ones
    summary = daily_summary(feature_world.lake, first, last)
    gold = feature_world.lake.read(catalog.CUSTOMER_FEATURES).toPandas()
    assert list(summary.index) == [*sorted(set(gold["snapshot_date"])), date(2018, 5, 13), date(2018, 5, 14)]
    counts = gold.groupby("snapshot_date").size()
    assert summary.loc[first, "customers"] == counts[first]
    assert summary.loc[first, "customer_id_nb_tx_7day_window"] == pytest.approx(
        gold[gold["snapshot_date"] == first]["customer_id_nb_tx_7day_window"].mean())
    assert summary.loc[date(2018, 5, 14), "customers"] == 0  # not built: shown as a gap

    path = plot_daily_summary(summary, tmp_path / "pictures" / "features.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
