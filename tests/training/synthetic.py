"""Synthetic labelled feature frames for training tests: no feature store, known signal."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from cardscore.model.protocol import Protocol, midnight

FEATURES = ["f_strong", "f_medium", "f_weak", "f_noise"]
COEFFICIENTS = np.array([2.2, 1.2, 0.4, 0.0])


def labelled_days(first: date, days: int, per_day: int, seed: int, customers: int = 400) -> pd.DataFrame:
    """`per_day` transactions a day with a logistic fraud signal in the features."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    x = rng.normal(size=(n, len(FEATURES)))
    logit = -4.2 + x @ COEFFICIENTS
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = label
    frame["customer_id"] = rng.integers(0, customers, n)
    frame["day"] = [pd.Timestamp(midnight(first + timedelta(days=i // per_day))) for i in range(n)]
    frame["transaction_id"] = np.arange(n) + seed * 10_000_000
    return frame


def training_sets(seed: int = 0, per_day: int = 300, tables: dict | None = None):
    """A `jobs.train.TrainingSets` over the handbook windows, with synthetic features."""
    from cardscore.jobs.train.stage import TrainingSets

    protocol = Protocol(date(2018, 7, 25))
    train = labelled_days(protocol.train_start, protocol.train_days, per_day, seed)
    test = labelled_days(protocol.test_start, protocol.test_days, per_day, seed + 1000)
    return TrainingSets(
        protocol=protocol,
        train=train,
        test=test,
        feature_names=list(FEATURES),
        feature_service="synthetic_v1",
        tables=tables or {"silver.transactions": {"uri": "file:///synthetic/tx", "version": 3}},
        sizes={"train_transactions": len(train), "test_transactions": len(test)},
    )
