"""The Fraud Detection Handbook's baseline classifiers (chapter 3.4), for like-for-like
comparisons on our own train/test sets (the quality benchmark).

As in the handbook, features are standardised on the training set (it matters for the
logistic regression only) and every model uses `random_state=0`. Missing feature values
(an entity absent from the feature store) are taken as 0, the value the feature definitions
give an entity without history; XGBoost itself handles them natively.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from cardscore.core.config.training import ModelParams

# The handbook's XGBoost: XGBClassifier defaults of its time (depth 6, eta 0.3, 100 rounds)
# with XGBoost's default 256 histogram bins.
HANDBOOK_XGBOOST = ModelParams(
    n_estimators=100, max_depth=6, learning_rate=0.3, min_child_weight=1.0, subsample=1.0,
    colsample_bytree=1.0, scale_pos_weight=1.0, max_bin=256, seed=0,
)


def handbook_baselines(seed: int = 0, n_jobs: int = 2) -> dict[str, Any]:
    """Unfitted scikit-learn pipelines, named as in the handbook's results table."""
    return {
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(random_state=seed, max_iter=1000)),
        "decision tree (depth 2)": make_pipeline(StandardScaler(), DecisionTreeClassifier(max_depth=2, random_state=seed)),
        "random forest": make_pipeline(
            StandardScaler(), RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=n_jobs)
        ),
    }


def baseline_matrix(frame: pd.DataFrame, feature_names: Sequence[str]) -> np.ndarray:
    return frame[list(feature_names)].astype(np.float64).fillna(0.0).to_numpy()


def fit_predict(model: Any, train: pd.DataFrame, test: pd.DataFrame, feature_names: Sequence[str]) -> np.ndarray:
    """Fit on `train` (features, `label`) and return fraud probabilities for `test`."""
    model.fit(baseline_matrix(train, feature_names), train["label"].to_numpy())
    return model.predict_proba(baseline_matrix(test, feature_names))[:, 1]
