"""The model card: a markdown page logged with every model (intended use, data, metrics, limits)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cardscore.model.evaluation import Evaluation

# The Fraud Detection Handbook's baseline results on its test week (chapter 3.4):
# AUC ROC, average precision, card precision@100.
HANDBOOK_TEST_RESULTS: dict[str, dict[str, float]] = {
    "logistic regression": {"auc_roc": 0.871, "average_precision": 0.606, "card_precision_at_k": 0.291},
    "decision tree (depth 2)": {"auc_roc": 0.763, "average_precision": 0.496, "card_precision_at_k": 0.241},
    "random forest": {"auc_roc": 0.867, "average_precision": 0.658, "card_precision_at_k": 0.287},
    "XGBoost": {"auc_roc": 0.862, "average_precision": 0.639, "card_precision_at_k": 0.273},
}


@dataclass
class CardInputs:
    model_name: str
    run_id: str
    code_version: str
    feature_names: Sequence[str]
    feature_service: str
    protocol: Mapping[str, Any]
    lineage: Mapping[str, Any]
    params: Mapping[str, Any]
    train: Evaluation
    test: Evaluation
    version: str | None = None
    search: Mapping[str, Any] | None = None
    gate: Mapping[str, Any] | None = None
    extra_limits: list[str] = field(default_factory=list)


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"  # NaN check without math


def model_card(info: CardInputs) -> str:
    """The card's markdown text."""
    k = info.test.k
    lines = [
        f"# Model card: {info.model_name}" + (f" v{info.version}" if info.version else ""),
        "",
        f"MLflow run `{info.run_id}`; code version `{info.code_version}`.",
        "",
        "## Intended use",
        "",
        "Scores card payments for fraud risk (probability-like score in [0, 1]) for the nightly "
        "batch scorer and the Kafka stream scorer. Scores rank transactions and cards for "
        f"investigators, who check about {k} cards a day; the score is not a calibrated "
        "probability and is not meant to block payments automatically.",
        "",
        "## Data",
        "",
        f"* Protocol: train {info.protocol.get('train_start')} .. {info.protocol.get('train_end')}, "
        f"delay {info.protocol.get('delay_days')} days, test {info.protocol.get('test_start')} .. "
        f"{info.protocol.get('test_end')}; training labels as known at {info.protocol.get('cutoff')}; "
        "cards known to be compromised removed from the test days (handbook protocol).",
        f"* Training set: {info.train.transactions} transactions, {info.train.frauds} frauds; "
        f"test set: {info.test.transactions} transactions, {info.test.frauds} frauds, {info.test.cards} cards.",
    ]
    if info.lineage.get("test_labels_complete") is False:
        lines.append(
            f"* **Test labels may be incomplete**: the newest label read was reported "
            f"{info.lineage.get('last_label_reported')}, before every test day's labels could arrive; "
            "frauds not yet reported count as legitimate, so the test metrics understate the model."
        )
    for table, meta in info.lineage.get("tables", {}).items():
        lines.append(f"* Input `{table}`: Delta version {meta.get('version')} ({meta.get('uri')})")
    lines += [
        f"* Features ({len(info.feature_names)}, Feast feature service `{info.feature_service}`, "
        "point-in-time correct): " + ", ".join(f"`{n}`" for n in info.feature_names),
        "",
        "## Model",
        "",
        "XGBoost booster (binary:logistic), stored in XGBoost's native JSON format. Parameters: "
        + ", ".join(f"{k_}={v}" for k_, v in sorted(info.params.items())),
    ]
    if info.search:
        lines += [
            "",
            f"Chosen by a prequential search over {info.search.get('candidates')} combinations x "
            f"{info.search.get('n_folds')} folds, by validation {info.search.get('select_by')} "
            f"({_fmt(float(info.search.get('best_score', float('nan'))))}); the test week was not used.",
        ]
    lines += [
        "",
        "## Metrics",
        "",
        f"| set / model | AUC ROC | average precision | card precision@{k} |",
        "| --- | ---: | ---: | ---: |",
        f"| **this model, test** | **{_fmt(info.test.auc_roc)}** | **{_fmt(info.test.average_precision)}** "
        f"| **{_fmt(info.test.card_precision_at_k)}** |",
        f"| this model, train | {_fmt(info.train.auc_roc)} | {_fmt(info.train.average_precision)} "
        f"| {_fmt(info.train.card_precision_at_k)} |",
    ]
    for name, row in HANDBOOK_TEST_RESULTS.items():
        lines.append(
            f"| handbook {name}, test | {row['auc_roc']:.3f} | {row['average_precision']:.3f} "
            f"| {row['card_precision_at_k']:.3f} |"
        )
    lines += [
        "",
        "The handbook rows come from its own simulated world and per-transaction feature windows; "
        "they are comparable in protocol, not identical in data.",
    ]
    if info.test.card_precision_per_day:
        lines += [
            "",
            f"Card precision@{k} per test day: "
            + ", ".join(f"{d} {v:.2f}" for d, v in zip(info.test.days, info.test.card_precision_per_day, strict=False)),
        ]
    if info.gate:
        lines += ["", "## Validation gate", "", "Passed." if info.gate.get("passed") else "FAILED."]
        lines += [f"* {'ok' if c['passed'] else 'FAIL'}: {c['detail']}" for c in info.gate.get("checks", [])]
    lines += [
        "",
        "## Limits",
        "",
        "* Trained and tested on simulated transactions (Fraud Detection Handbook simulator); "
        "real fraud patterns drift and differ.",
        "* One test week; metrics vary from week to week (the prequential search shows the spread).",
        "* Fraud labels arrive with a delay; recent frauds not yet reported count as genuine in training.",
        "* Scores depend on the feature store being fresh: terminal risk features lag by the "
        "feedback delay by design, and missing features degrade the score silently (NaN is allowed).",
        *[f"* {limit}" for limit in info.extra_limits],
        "",
    ]
    return "\n".join(lines)
