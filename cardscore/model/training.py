"""Fitting the XGBoost model, scoring with it, and the prequential hyperparameter search.

The model is a native `xgboost.Booster` (objective binary:logistic) with feature names set:
it is what MLflow stores (JSON, no pickle), what `cardscore.core.registry.load_booster` returns to
the scorers, and its `predict` gives fraud probabilities, so the pyfunc flavour and the raw
booster agree exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cardscore.core.config.training import ModelParams
from cardscore.model.datasets import model_matrix
from cardscore.model.evaluation import Evaluation, evaluate
from cardscore.model.scoring import predict

if TYPE_CHECKING:
    import xgboost as xgb

Progress = Callable[[int, int, str], None]  # (done, total, description)


def booster_params(params: ModelParams) -> dict[str, Any]:
    """XGBoost's learning parameters for `params` (n_estimators is the number of rounds)."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "max_depth": params.max_depth,
        "eta": params.learning_rate,
        "min_child_weight": params.min_child_weight,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "lambda": params.reg_lambda,
        "scale_pos_weight": params.scale_pos_weight,
        "tree_method": params.tree_method,
        "max_bin": params.max_bin,
        "nthread": params.n_jobs,
        "seed": params.seed,
    }


def fit_booster(
    frame: pd.DataFrame, feature_names: Sequence[str], params: ModelParams, label: str = "label"
) -> xgb.Booster:
    """Fit a booster on `frame`'s features and 0/1 `label`."""
    if frame.empty:
        raise ValueError("cannot fit a model on an empty training set")
    import xgboost as xgb  # here: the command line imports this module, most commands never fit

    matrix = xgb.DMatrix(
        model_matrix(frame, feature_names), label=frame[label].to_numpy(), feature_names=list(feature_names)
    )
    return xgb.train(booster_params(params), matrix, num_boost_round=params.n_estimators)


def feature_importance(booster: xgb.Booster, importance_type: str = "gain") -> dict[str, float]:
    """Importance per feature (features never used in a split get 0)."""
    scores = booster.get_score(importance_type=importance_type)
    return {name: float(scores.get(name, 0.0)) for name in booster.feature_names or []}


def param_grid(base: ModelParams, grid: dict[str, list[Any]]) -> list[ModelParams]:
    """Every combination of the grid's values over `base`, in a stable order."""
    keys = sorted(grid)
    combos = itertools.product(*(grid[k] for k in keys))
    out = []
    for values in combos:
        update = dict(zip(keys, values, strict=True))
        for key in ("n_estimators", "max_depth"):
            if key in update:
                update[key] = int(update[key])
        out.append(base.model_copy(update=update))
    return out


@dataclass
class Candidate:
    """One hyperparameter combination and its validation metrics per fold and on average."""

    params: ModelParams
    folds: list[Evaluation] = field(default_factory=list)

    def mean(self, metric: str) -> float:
        values = [f.metrics()[metric] for f in self.folds]
        return float(np.nanmean(values)) if values else float("nan")

    def std(self, metric: str) -> float:
        values = [f.metrics()[metric] for f in self.folds]
        return float(np.nanstd(values)) if values else float("nan")

    def changed(self, base: ModelParams) -> dict[str, Any]:
        return {
            k: v for k, v in self.params.model_dump().items() if v != getattr(base, k)
        }


@dataclass
class SearchResult:
    select_by: str
    candidates: list[Candidate]
    best: Candidate

    def table(self) -> pd.DataFrame:
        """One row per candidate: its parameters and mean/std validation metrics."""
        rows = []
        for cand in self.candidates:
            row: dict[str, Any] = cand.params.model_dump()
            for metric in ("auc_roc", "average_precision", "card_precision_at_k"):
                row[f"valid_{metric}"] = cand.mean(metric)
                row[f"valid_{metric}_std"] = cand.std(metric)
            rows.append(row)
        return pd.DataFrame(rows).sort_values(f"valid_{self.select_by}", ascending=False)


def prequential_search(
    folds: Sequence[tuple[pd.DataFrame, pd.DataFrame]],
    feature_names: Sequence[str],
    base: ModelParams,
    grid: dict[str, list[Any]],
    select_by: str = "average_precision",
    k: int = 100,
    progress: Progress | None = None,
) -> SearchResult:
    """Fit every grid combination on every fold's training rows, score its validation rows.

    Selects the combination with the best mean validation `select_by`; ties go to the first
    in grid order, so the choice is deterministic. The test window is never seen here.
    """
    if not folds:
        raise ValueError("the search needs at least one fold")
    combos = param_grid(base, grid)
    total = len(combos) * len(folds)
    done = 0
    candidates: list[Candidate] = []
    for params in combos:
        cand = Candidate(params)
        for train, valid in folds:
            booster = fit_booster(train, feature_names, params)
            cand.folds.append(evaluate(valid, predict(booster, valid), k))
            done += 1
            if progress is not None:
                progress(done, total, f"{cand.changed(base) or 'defaults'}")
        candidates.append(cand)
    scored = [c for c in candidates if not np.isnan(c.mean(select_by))]
    if not scored:
        raise ValueError(f"no candidate has a validation {select_by} (no frauds in the folds?)")
    best = max(scored, key=lambda c: c.mean(select_by))
    return SearchResult(select_by, candidates, best)
