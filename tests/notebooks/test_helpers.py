"""cardscore.notebook's parameters and display, without a notebook around them."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cardscore import notebook as nb


class FakeWidgets:
    """Stands in for Databricks' `dbutils.widgets`, which cannot run outside Databricks."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.created: dict[str, str] = {}

    def text(self, name: str, default: str, label: str) -> None:
        self.created[name] = default
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]


class FakeDbutils:
    def __init__(self, values: dict[str, str]) -> None:
        self.widgets = FakeWidgets(values)


@pytest.fixture(autouse=True)
def no_notebook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(nb.ENV_PREFIX)]:
        monkeypatch.delenv(name)


def test_locally_parameters_come_from_the_environment_else_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not nb.on_databricks()
    assert nb.env_name("train_start") == "CARDSCORE_NB_TRAIN_START"
    assert nb.param("train_start", "auto") == "auto"
    monkeypatch.setenv("CARDSCORE_NB_TRAIN_START", " 2018-07-25 ")
    assert nb.param("train_start", "auto") == "2018-07-25"
    assert nb.day_param("train_start", date(2018, 1, 1)) == date(2018, 7, 25)
    monkeypatch.setenv("CARDSCORE_NB_TOP", "x1")
    with pytest.raises(ValueError, match=r"'top'.*not a whole number"):
        nb.int_param("top", 20)
    monkeypatch.setenv("CARDSCORE_NB_PROMOTE", "no")
    assert nb.flag_param("promote", True) is False
    monkeypatch.setenv("CARDSCORE_NB_PROMOTE", "")
    assert nb.flag_param("promote", True) is True
    monkeypatch.setenv("CARDSCORE_NB_PROMOTE", "maybe")
    with pytest.raises(ValueError, match="true/false"):
        nb.flag_param("promote", True)


def test_on_databricks_parameters_are_widgets(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDbutils({"day": "2018-05-02"})
    monkeypatch.setattr(nb, "dbutils", lambda: fake)
    monkeypatch.setenv("CARDSCORE_NB_DAY", "2018-01-01")  # ignored where widgets exist
    assert nb.day_param("day", date(2018, 4, 1)) == date(2018, 5, 2)
    assert nb.param("rate", "0") == "0"
    assert fake.widgets.created == {"day": "2018-04-01", "rate": "0"}  # a widget per parameter, with its default


def test_settings_come_from_the_config_parameter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cardscore.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\nsimulator: {{n_days: 12}}\n")
    monkeypatch.setenv("CARDSCORE_NB_CONFIG", str(config))
    settings = nb.settings({"kafka": {"partitions": 3}})
    assert settings.home_path == tmp_path / "home" and settings.kafka.partitions == 3
    assert nb.world_days(settings) == (date(2018, 4, 1), date(2018, 4, 12))  # nothing simulated yet
    assert nb.pictures_dir() == tmp_path / "home" / "reports" / "notebooks"


def test_display_prints_tables_and_saves_pictures_and_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    monkeypatch.setattr(nb, "pictures_dir", lambda settings=None: tmp_path)
    nb.display(pd.DataFrame({"day": ["2018-04-01"], "frauds": [3]}), "per_day")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = nb.display(fig, "line")
    page = nb.display("<p>drift</p>", "drift")
    printed: Any = capsys.readouterr().out
    assert "== per day" in printed and "2018-04-01" in printed
    assert png == tmp_path / "line.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert page == tmp_path / "drift.html" and "<p>drift</p>" in page.read_text()
    assert f"picture: {png}" in printed and f"page: {page}" in printed
