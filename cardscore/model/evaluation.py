"""Evaluating scores on a labelled set, and the validation gate's decision.

The gate has two kinds of checks, each reported with what was observed and what was needed:
absolute minimums (from `training.gate`), and no regression against the current champion
re-scored on the same test set, beyond a tolerance. Without a champion the regression checks
pass trivially (and say so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cardscore.core.config.training import GateSettings
from cardscore.model.metrics import auc_roc, average_precision, card_precision_at_k

METRICS = ("auc_roc", "average_precision", "card_precision_at_k")
METRIC_LABELS = {
    "auc_roc": "AUC ROC",
    "average_precision": "average precision",
    "card_precision_at_k": "card precision@k",
}


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one labelled set."""

    auc_roc: float
    average_precision: float
    card_precision_at_k: float
    k: int
    card_precision_per_day: list[float] = field(default_factory=list)
    days: list[str] = field(default_factory=list)
    transactions: int = 0
    frauds: int = 0
    cards: int = 0

    def metrics(self) -> dict[str, float]:
        return {m: float(getattr(self, m)) for m in METRICS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(frame: pd.DataFrame, scores: np.ndarray, k: int = 100) -> Evaluation:
    """AUC ROC, average precision and card precision@k of `scores` on `frame`.

    `frame` has `label` (0/1), `customer_id` and `day`, one row per transaction, aligned with
    `scores`.
    """
    if len(frame) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(frame)} rows")
    y = frame["label"].to_numpy()
    scored = pd.DataFrame(
        {"score": np.asarray(scores, dtype=np.float64), "label": y,
         "customer_id": frame["customer_id"].to_numpy(), "day": frame["day"].to_numpy()}
    )
    cp = card_precision_at_k(scored, k)
    return Evaluation(
        auc_roc=auc_roc(y, scores),
        average_precision=average_precision(y, scores),
        card_precision_at_k=cp.mean,
        k=k,
        card_precision_per_day=cp.per_day,
        days=[str(pd.Timestamp(d).date()) for d in cp.days],
        transactions=len(frame),
        frauds=int(y.sum()),
        cards=int(frame["customer_id"].nunique()),
    )


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    observed: float
    threshold: float
    detail: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: list[Check]
    champion_version: str | None = None
    champion: Evaluation | None = None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        head = "validation gate passed" if self.passed else "validation gate FAILED"
        lines = [head]
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.detail}" for c in self.checks]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "champion_version": self.champion_version,
            "champion": self.champion.metrics() if self.champion else None,
            "checks": [asdict(c) for c in self.checks],
        }


def _ok(value: float, threshold: float) -> bool:
    return not math.isnan(value) and value >= threshold


def gate_decision(
    candidate: Evaluation,
    champion: Evaluation | None,
    gate: GateSettings,
    champion_version: str | None = None,
) -> GateDecision:
    """Minimums, then no regression beyond the tolerance against the champion (if any)."""
    checks = []
    for metric in METRICS:
        value, floor = candidate.metrics()[metric], gate.minimum(metric)
        label = METRIC_LABELS[metric].replace("@k", f"@{candidate.k}")
        checks.append(
            Check(f"min_{metric}", _ok(value, floor), value, floor, f"{label} {value:.4f} >= minimum {floor:.4f}")
        )
    for metric in METRICS:
        label = METRIC_LABELS[metric].replace("@k", f"@{candidate.k}")
        value = candidate.metrics()[metric]
        if champion is None:
            checks.append(
                Check(f"no_regression_{metric}", True, value, float("nan"),
                      f"{label}: no champion yet, nothing to regress from")
            )
            continue
        reference, tol = champion.metrics()[metric], gate.tolerance(metric)
        floor = reference - tol
        checks.append(
            Check(
                f"no_regression_{metric}",
                _ok(value, floor) or math.isnan(reference),
                value,
                floor,
                f"{label} {value:.4f} >= champion v{champion_version} {reference:.4f} - tolerance {tol:.4f}",
            )
        )
    return GateDecision(all(c.passed for c in checks), checks, champion_version, champion)
