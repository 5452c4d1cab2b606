"""Fitting, the prequential search and reproducibility, on synthetic feature frames."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cardscore.core.config import ConfigError, load_settings
from cardscore.core.config.training import ModelParams
from cardscore.jobs.train.stage import TrainingParams, train_on_sets
from cardscore.model.protocol import validation_folds
from cardscore.model.training import param_grid, prequential_search
from tests.training.synthetic import FEATURES, labelled_days, training_sets

pytestmark = pytest.mark.engine  # CPU-heavy XGBoost fits


def with_folds(sets, n_folds: int = 2):
    folds = validation_folds(sets.protocol, n_folds)
    sets.folds = [
        (f, labelled_days(f.train_start, f.train_days, 300, 100 + i),
         labelled_days(f.test_start, f.test_days, 300, 200 + i))
        for i, f in enumerate(folds)
    ]
    return sets


def test_same_seed_and_data_give_the_same_metrics(training_settings) -> None:
    runs = [
        train_on_sets(training_settings, training_sets(seed=4), TrainingParams(register=False))
        for _ in range(2)
    ]
    assert runs[0].run_id != runs[1].run_id
    assert runs[0].test == runs[1].test and runs[0].train == runs[1].train
    assert runs[0].version is None and runs[0].gate is None  # --no-register: nothing registered
    other_seed = training_settings.model_copy(deep=True)
    other_seed.training.model.subsample = 0.7
    other_seed.training.model.seed = 1
    changed = train_on_sets(other_seed, training_sets(seed=4), TrainingParams(register=False))
    assert changed.test.average_precision != runs[0].test.average_precision


def test_prequential_search_selects_on_validation_only(training_settings) -> None:
    settings = training_settings.model_copy(deep=True)
    settings.training.search.grid = {"max_depth": [1, 3], "n_estimators": [5, 60]}
    settings.training.search.select_by = "average_precision"
    seen: list[tuple[str, int, int]] = []
    sets = with_folds(training_sets(seed=2))
    report = train_on_sets(settings, sets, TrainingParams(register=False, progress=lambda *a: seen.append(a)))
    assert report.search["candidates"] == 4 and report.search["n_folds"] == 2
    assert [s for s in seen if s[0] == "search"][-1] == ("search", 8, 8)
    # folds end before the test window: fold 0 validates on the training week
    assert all(f["test_end"] < str(sets.protocol.test_start) for f in report.search["folds"])
    chosen = report.search["best_params"]
    assert (chosen["max_depth"], chosen["n_estimators"]) != (1, 5)  # the weakest loses
    assert report.params == chosen

    # The test rows play no part in the choice: another test week, the same choice.
    other = with_folds(training_sets(seed=2))
    other.test = labelled_days(other.protocol.test_start, 7, 300, 999)
    again = train_on_sets(settings, other, TrainingParams(register=False))
    assert again.search["best_params"] == chosen


def test_search_ranks_candidates_by_the_chosen_metric() -> None:
    sets = with_folds(training_sets(seed=3))
    folds = [(tr, va) for _, tr, va in sets.folds]
    quick = ModelParams(n_estimators=40, max_bin=256, n_jobs=1)
    result = prequential_search(folds, FEATURES, quick, {"max_depth": [1, 4]}, "card_precision_at_k", k=20)
    table = result.table()
    assert list(table["valid_card_precision_at_k"]) == sorted(table["valid_card_precision_at_k"], reverse=True)
    assert result.best.mean("card_precision_at_k") == table["valid_card_precision_at_k"].iloc[0]


def test_param_grid_and_its_validation() -> None:
    combos = param_grid(ModelParams(), {"max_depth": [2, 4], "learning_rate": [0.1, 0.3]})
    assert len(combos) == 4 and {c.max_depth for c in combos} == {2, 4}
    assert all(isinstance(c.max_depth, int) for c in param_grid(ModelParams(), {"max_depth": [2.0]}))
    with pytest.raises(ConfigError, match="unknown or unsearchable"):
        load_settings(overrides={"training": {"search": {"grid": {"max_dept": [3]}}}})
    with pytest.raises(ConfigError, match="without candidate values"):
        load_settings(overrides={"training": {"search": {"grid": {"max_depth": []}}}})


def test_validation_folds_shift_back_by_a_week() -> None:
    sets = training_sets()
    folds = validation_folds(sets.protocol, 4)
    assert [folds[i].train_start - folds[i + 1].train_start for i in range(3)] == [timedelta(days=7)] * 3
