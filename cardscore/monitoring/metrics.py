"""The day's monitoring metrics as rows (pure: pandas in, rows out).

One `MetricRow` per measured value, long format, so one table holds features, scores,
freshness, stream health and per-day, per-version delayed-label performance alike. A row with a
threshold knows whether it violates it: `direction` says which side is bad.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from cardscore.model.metrics import auc_roc, average_precision, card_precision_at_k
from cardscore.monitoring import stats
from cardscore.monitoring.profile import SCORE, ReferenceProfile

MAX, MIN = "max", "min"  # the threshold is an upper / a lower bound


@dataclass
class MetricRow:
    metric: str
    value: float | None
    subject: str | None = None  # a feature, a table, a stream counter; None for day-wide metrics
    threshold: float | None = None
    direction: str = MAX
    scored_day: date | None = None  # performance rows: the scored day the value is about
    model_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def violated(self) -> bool:
        if self.threshold is None:
            return False
        if self.value is None or (isinstance(self.value, float) and np.isnan(self.value)):
            # An input that is not there at all (freshness) is recorded as a missing value.
            return bool(self.details.get("missing"))
        return self.value > self.threshold if self.direction == MAX else self.value < self.threshold

    def is_feature_metric(self) -> bool:
        return self.metric.startswith("feature_")


def _value(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if np.isnan(x) else x


# ------------------------------------------------------------------------------ drift


def drift_rows(
    current: pd.DataFrame,
    profile: ReferenceProfile,
    sample: pd.DataFrame,
    feature_names: Sequence[str],
    thresholds: Any,  # cardscore.core.config.monitoring.DriftThresholds
    exclude: Iterable[str] = (),
    model_version: str | None = None,
) -> list[MetricRow]:
    """PSI, KS and null rate of each feature, and PSI/KS of the score, of `current` (the day's
    rows: feature columns and `score`) against the reference."""
    rows: list[MetricRow] = []
    excluded = set(exclude)
    for name in feature_names:
        if name not in profile.features:
            continue
        values = current[name].to_numpy(dtype=np.float64) if name in current else np.full(len(current), np.nan)
        ref = profile.features[name]
        null = stats.null_rate(values)
        rows.append(MetricRow("feature_null_rate", null, name, thresholds.feature_null_rate,
                              model_version=model_version, details={"reference": ref.null_rate}))
        if name in excluded:
            continue
        rows += _distribution_rows("feature", name, values, ref, sample[name].to_numpy(dtype=np.float64),
                                   thresholds.feature_psi, thresholds.feature_ks, model_version)
    if profile.score is not None and SCORE in current:
        rows += _distribution_rows("score", None, current[SCORE].to_numpy(dtype=np.float64), profile.score,
                                   sample[SCORE].to_numpy(dtype=np.float64), thresholds.score_psi,
                                   thresholds.score_ks, model_version)
    return rows


def _distribution_rows(
    kind: str, subject: str | None, values: np.ndarray, ref: Any, ref_sample: np.ndarray,
    psi_max: float, ks_max: float, model_version: str | None,
) -> list[MetricRow]:
    current = stats.bin_proportions(values, ref.edges)
    psi = stats.psi(ref.proportions, current)
    ks = stats.ks(ref_sample, values)
    finite = values[~np.isnan(values)]
    mean = float(finite.mean()) if finite.size else None
    return [
        MetricRow(f"{kind}_psi", psi, subject, psi_max, model_version=model_version,
                  details={"bins": len(ref.proportions), "current": [round(p, 6) for p in current],
                           "reference": [round(p, 6) for p in ref.proportions]}),
        MetricRow(f"{kind}_ks", _value(ks.statistic), subject, ks_max, model_version=model_version,
                  details={"pvalue": _value(ks.pvalue), "reference_rows": int(ref_sample.size)}),
        MetricRow(f"{kind}_mean", mean, subject, model_version=model_version, details={"reference": ref.mean}),
    ]


def unknown_rows(predictions: pd.DataFrame, thresholds: Any, model_version: str | None = None) -> list[MetricRow]:
    """Shares of the day's predictions scored with defaults for an unknown customer/terminal."""
    counts = {f"unknown_{e}": int(predictions[f"unknown_{e}"].astype(bool).sum()) for e in ("customer", "terminal")}
    return unknown_rows_of_counts(len(predictions), counts, thresholds, model_version)


def unknown_rows_of_counts(
    rows: int, unknown: Mapping[str, int], thresholds: Any, model_version: str | None = None
) -> list[MetricRow]:
    """`unknown_rows` from counts (`unknown` maps unknown_customer / unknown_terminal to the
    number of such predictions), as the monitoring stage counts them in the engine."""
    out = [MetricRow("rows", float(rows), model_version=model_version)]
    for entity in ("customer", "terminal"):
        count = int(unknown[f"unknown_{entity}"]) if rows else 0
        out.append(MetricRow(f"unknown_{entity}_rate", count / rows if rows else None, None,
                             getattr(thresholds, f"unknown_{entity}_rate"), model_version=model_version,
                             details={"count": count}))
    return out


# ------------------------------------------------------------------------------ delayed labels


def known_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """0/1 label of each prediction as known: a labelled transaction's `is_fraud`; unlabelled
    transactions are genuine (the label feed only confirms frauds, or corrects them)."""
    latest = labels.drop_duplicates("transaction_id", keep="last")
    frauds = latest.loc[latest["is_fraud"].astype(bool), "transaction_id"]
    return predictions["transaction_id"].isin(frauds).astype(np.int8)


# The per scored day and model version statistics the performance rows are made of.
PERFORMANCE_STATS = ("tx_date", "model_version", "transactions", "known_frauds", "auc_roc",
                     "average_precision", "card_precision_at_k")


def performance_stats(predictions: pd.DataFrame, labels: pd.DataFrame, k: int) -> pd.DataFrame:
    """AUC, AP and card precision@k per scored day and model version, in pandas (the reference;
    the monitoring stage computes the same table in the engine:
    `cardscore.monitoring.performance.performance_stats_spark`)."""
    if predictions.empty:
        return pd.DataFrame(columns=list(PERFORMANCE_STATS))
    frame = predictions.assign(label=known_labels(predictions, labels).to_numpy())
    out = []
    for (scored_day, version), group in frame.groupby(["tx_date", "model_version"], sort=True):
        y, s = group["label"].to_numpy(), group[SCORE].to_numpy(dtype=np.float64)
        cp = card_precision_at_k(group.assign(day=0), k, label="label", remove_detected=False)
        out.append((pd.Timestamp(scored_day).date(), str(version), len(group), int(y.sum()), auc_roc(y, s),
                    average_precision(y, s), cp.mean))
    return pd.DataFrame(out, columns=list(PERFORMANCE_STATS))


def performance_rows(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    day: date,
    *,
    k: int,
    label_delay_days: int,
    thresholds: Any,  # cardscore.core.config.monitoring.PerformanceThresholds
) -> list[MetricRow]:
    """AUC, AP and card precision@k of each scored day and model version, with the labels
    known on `day`, and how complete those labels are.

    `predictions`: transaction_id, customer_id, score, model_version, tx_date (scored days up
    to `day`); `labels`: transaction_id, is_fraud of the reports known on `day`. Thresholds
    apply only to the scored day whose labels have just become complete (day - delay), so each
    scored day is judged once.
    """
    if predictions.empty:
        return []
    return performance_rows_from_stats(performance_stats(predictions, labels, k), day, k=k,
                                       label_delay_days=label_delay_days, thresholds=thresholds)


def performance_rows_from_stats(
    stats_table: pd.DataFrame,
    day: date,
    *,
    k: int,
    label_delay_days: int,
    thresholds: Any,
) -> list[MetricRow]:
    """`performance_rows` from a `PERFORMANCE_STATS` table (however it was computed)."""
    judged_day = _minus_days(day, label_delay_days)
    rows: list[MetricRow] = []
    for stat in stats_table.sort_values(["tx_date", "model_version"], kind="mergesort").itertuples(index=False):
        scored_day = pd.Timestamp(stat.tx_date).date()
        version = str(stat.model_version)
        days_since = (day - scored_day).days
        complete = days_since >= label_delay_days
        judged = scored_day == judged_day
        common = {
            "transactions": int(stat.transactions),
            "known_frauds": int(stat.known_frauds),
            "days_since_scoring": days_since,
            "label_delay_days": label_delay_days,
            "labels_complete": complete,
        }
        values = {
            "auc_roc": stat.auc_roc,
            "average_precision": stat.average_precision,
            "card_precision_at_k": stat.card_precision_at_k,
        }
        for metric, value in values.items():
            bound = getattr(thresholds, metric)
            rows.append(MetricRow(
                metric, _value(value), None, bound if judged else None, MIN, scored_day, version,
                {**common, "k": k} if metric == "card_precision_at_k" else common,
            ))
        rows.append(MetricRow(
            "label_completeness", min(1.0, days_since / label_delay_days) if label_delay_days else 1.0,
            None, None, MIN, scored_day, version, common,
        ))
    return rows


def _minus_days(day: date, n: int) -> date:
    from datetime import timedelta

    return day - timedelta(days=n)


# ------------------------------------------------------------------------------ freshness


def freshness_rows(
    day: date, latest: Mapping[str, date | None], thresholds: Mapping[str, int], optional: Iterable[str] = ()
) -> list[MetricRow]:
    """Lag in days (day - latest day present) of each input; a missing input is a violation
    unless it is `optional`."""
    rows = []
    allowed = set(optional)
    for source, last in latest.items():
        bound = thresholds.get(source)
        if last is None:
            rows.append(MetricRow("freshness_lag_days", None, source, bound,
                                  details={"missing": source not in allowed, "absent": True}))
        else:
            rows.append(MetricRow("freshness_lag_days", float((day - last).days), source, bound,
                                  details={"latest": last.isoformat()}))
    return rows
