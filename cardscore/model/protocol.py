"""The evaluation protocol: train/delay/test windows and the handbook's train/test split.

`protocol_split` reproduces the Fraud Detection Handbook's `get_train_test_set` (chapter 3.4)
with labels as a real system knows them:

* training labels count only if reported at or before the cutoff (training time, the start of
  the test window: the model is fitted then and scores the test days);
* the test set drops the cards already known to be compromised, day by day, as the handbook
  does: on test day d, the cards with a fraud on a day from the training start up to
  `train_start + train_days + d - 1` (the training days, then the delay days one by one) are
  known, provided their label had been reported before test day d began (with a feedback
  delay no longer than `delay_days`, as in the default simulated world, this is exactly the
  handbook's set);
* test labels are the labels known at evaluation time (`test_labels_as_of`; default: all).

Validation folds for the prequential search (the handbook's `prequential_grid_search`) are
protocols shifted back in time; fold 0 validates on the last `test_days` training days.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from cardscore.core.config.training import ProtocolSettings

# Columns the split needs from the transactions and the labels.
TRANSACTION_COLUMNS = ("transaction_id", "customer_id", "event_time")
LABEL_COLUMNS = ("transaction_id", "is_fraud", "reported_time")


def midnight(day: date) -> datetime:
    """The start of a UTC day, tz-aware."""
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Protocol:
    """One train / delay / test window; end dates are exclusive."""

    train_start: date
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    def __post_init__(self) -> None:
        if self.train_days < 1 or self.test_days < 1 or self.delay_days < 0:
            raise ValueError("train_days and test_days must be >= 1 and delay_days >= 0")

    @classmethod
    def from_settings(cls, settings: ProtocolSettings, train_start: date | None = None) -> Protocol:
        start = train_start or settings.train_start
        if start is None:  # Settings places an unset one in the world; a bare section cannot
            raise ValueError("training.protocol.train_start is not set and no train_start was given")
        return cls(
            start,
            settings.train_days,
            settings.delay_days,
            settings.test_days,
        )

    @property
    def train_end(self) -> date:
        return self.train_start + timedelta(days=self.train_days)

    @property
    def test_start(self) -> date:
        return self.train_end + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> date:
        return self.test_start + timedelta(days=self.test_days)

    @property
    def cutoff(self) -> datetime:
        """Training time: labels reported at or before it are known to the model."""
        return midnight(self.test_start)

    def shifted(self, days: int) -> Protocol:
        return Protocol(
            self.train_start + timedelta(days=days), self.train_days, self.delay_days, self.test_days
        )

    def describe(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {k: str(v) if isinstance(v, date) else v for k, v in asdict(self).items()}
        out.update(
            train_end=str(self.train_end - timedelta(days=1)),
            test_start=str(self.test_start),
            test_end=str(self.test_end - timedelta(days=1)),
            cutoff=self.cutoff.isoformat(),
        )
        return out


def validation_folds(protocol: Protocol, n_folds: int, shift_days: int = 7) -> list[Protocol]:
    """Prequential validation protocols: fold 0 validates on the protocol's last training days.

    Fold i is fold 0 moved back by `i * shift_days`; none of them reaches the delay or test
    days of `protocol`.
    """
    if n_folds < 1:
        raise ValueError("n_folds must be at least 1")
    fold0_start = protocol.train_end - timedelta(
        days=protocol.test_days + protocol.delay_days + protocol.train_days
    )
    fold0 = Protocol(fold0_start, protocol.train_days, protocol.delay_days, protocol.test_days)
    return [fold0.shifted(-shift_days * i) for i in range(n_folds)]


@dataclass
class Split:
    """The training and test rows of one protocol, each with `label` (0/1) and `day`."""

    protocol: Protocol
    train: pd.DataFrame
    test: pd.DataFrame

    def summary(self) -> dict[str, int]:
        return {
            "train_transactions": len(self.train),
            "train_frauds": int(self.train["label"].sum()),
            "test_transactions": len(self.test),
            "test_frauds": int(self.test["label"].sum()),
        }


def _known_frauds(labels: pd.DataFrame, as_of: datetime | None) -> pd.Series:
    """Ids of the transactions known to be fraud at `as_of` (None: every label given)."""
    frauds = labels["is_fraud"].fillna(False).astype(bool)
    if as_of is not None:
        frauds &= labels["reported_time"] <= pd.Timestamp(as_of)
    return labels.loc[frauds, "transaction_id"]


def _with_day(transactions: pd.DataFrame) -> pd.DataFrame:
    if "day" in transactions.columns:
        return transactions
    out = transactions.copy()
    out["day"] = out["event_time"].dt.floor("D")
    return out


def _between(frame: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    day = frame["day"]
    return frame[(day >= pd.Timestamp(midnight(start))) & (day < pd.Timestamp(midnight(end)))]


def _earliest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def protocol_split(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    protocol: Protocol,
    *,
    train_labels_as_of: datetime | None = None,
    test_labels_as_of: datetime | None = None,
) -> Split:
    """Training and test rows for `protocol` (see the module docstring for the rules).

    `transactions` has at least transaction_id, customer_id and a tz-aware UTC event_time
    (other columns are kept); `labels` has transaction_id, is_fraud and reported_time, one row
    per labelled transaction (unlabelled transactions are genuine). `train_labels_as_of`
    defaults to the protocol's cutoff; `test_labels_as_of` to every label given.
    """
    missing = (set(TRANSACTION_COLUMNS) - set(transactions.columns)) | (
        set(LABEL_COLUMNS) - set(labels.columns)
    )
    if missing:
        raise KeyError(f"protocol_split needs columns {sorted(missing)}")
    if "label" in transactions.columns:
        raise ValueError("transactions already carry a label column; pass labels separately")
    tx = _with_day(transactions)
    train_as_of = train_labels_as_of or protocol.cutoff

    train = _between(tx, protocol.train_start, protocol.train_end).copy()
    train["label"] = train["transaction_id"].isin(_known_frauds(labels, train_as_of)).astype(np.int8)

    history = _between(tx, protocol.train_start, protocol.test_end)
    test_days = []
    for d in range(protocol.test_days):
        day = protocol.test_start + timedelta(days=d)
        known_frauds = _known_frauds(labels, _earliest(midnight(day), test_labels_as_of))
        # The training days, then the delay days one by one: up to train_start + train_days + d - 1.
        seen = _between(history, protocol.train_start, protocol.train_end + timedelta(days=d))
        compromised = seen.loc[seen["transaction_id"].isin(known_frauds), "customer_id"].unique()
        rows = _between(tx, day, day + timedelta(days=1))
        test_days.append(rows[~rows["customer_id"].isin(compromised)])
    test = pd.concat(test_days) if test_days else tx.iloc[:0]
    test = test.copy()
    test["label"] = test["transaction_id"].isin(_known_frauds(labels, test_labels_as_of)).astype(np.int8)
    return Split(
        protocol,
        train.sort_values("transaction_id", kind="mergesort").reset_index(drop=True),
        test.sort_values("transaction_id", kind="mergesort").reset_index(drop=True),
    )


def days_needed(protocols: list[Protocol]) -> tuple[date, date]:
    """First day and the day after the last one the protocols read (their union)."""
    if not protocols:
        raise ValueError("no protocols")
    return min(p.train_start for p in protocols), max(p.test_end for p in protocols)
