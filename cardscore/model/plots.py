"""PNG pictures of a model's evaluation: ROC and PR curves, feature importance, score spread.

Built on `matplotlib.figure.Figure` directly (no pyplot), so no global backend or figure
state is touched and the functions are safe to call from jobs and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import auc, precision_recall_curve, roc_curve

DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def roc_plot(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """ROC curves, one per named (labels, scores) pair (e.g. train and test)."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for name, (y, s) in curves.items():
        if np.unique(y).size < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.legend(loc="lower right")
    return _save(fig, path)


def pr_plot(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """Precision-recall curves; the dashed line is each set's fraud rate (a random model)."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for name, (y, s) in curves.items():
        if not np.asarray(y).any():
            continue
        precision, recall, _ = precision_recall_curve(y, s)
        line = ax.step(recall, precision, where="post", label=name)[0]
        ax.axhline(float(np.mean(y)), linestyle="--", color=line.get_color(), alpha=0.5)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return _save(fig, path)


def importance_plot(importance: Mapping[str, float], path: Path, kind: str = "gain") -> Path:
    """Horizontal bars of feature importance, largest on top."""
    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(6.5, 0.3 * len(items) + 1.2))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    ax.set(xlabel=f"importance ({kind})", title="Feature importance")
    return _save(fig, path)


def score_distribution_plot(y: np.ndarray, scores: np.ndarray, path: Path) -> Path:
    """Histograms of scores for genuine and fraud transactions (log count axis)."""
    y = np.asarray(y).astype(bool)
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 51)
    ax.hist(np.asarray(scores)[~y], bins=bins, alpha=0.6, label=f"genuine ({(~y).sum()})", color="#4c72b0")
    ax.hist(np.asarray(scores)[y], bins=bins, alpha=0.7, label=f"fraud ({y.sum()})", color="#dd8452")
    ax.set_yscale("log")
    ax.set(xlabel="fraud score", ylabel="transactions (log)", title="Score distribution by class")
    ax.legend()
    return _save(fig, path)


def card_precision_plot(days: list[str], per_day: list[float], k: int, path: Path) -> Path:
    """Card precision@k per test day, with its mean."""
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.add_subplot()
    ax.bar(days, per_day, color="#55a868")
    if per_day:
        ax.axhline(float(np.mean(per_day)), linestyle="--", color="black", label=f"mean {np.mean(per_day):.3f}")
        ax.legend()
    ax.set(ylabel=f"card precision@{k}", title="Card precision per test day", ylim=(0, 1))
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)
