"""The release comparison of a day (pure: pandas in, rows out): per arm, and the candidate
(the canary's version, else the shadow's) against the champion on the SAME transactions.

Every prediction row carries the served score and, beside it, the other model's score
(`shadow_score`: the shadow version's on the champion arm, the champion's on the canary arm),
so each transaction the release touched has a champion score and a candidate score:

    champion: arm champion -> score;        arm canary -> shadow_score
    candidate: arm canary  -> score;        arm champion -> shadow_score (shadow = candidate)

Rows (`MetricRow`, the monitoring table's long format, `model_version` = the candidate):

* per arm (`subject` = the arm): `release_arm_rows`, `release_arm_mean_score`,
  `release_arm_alert_rate` (scores >= `release.alert_threshold`);
* on the paired transactions: `release_score_psi` (candidate vs champion, the champion's
  quantile bins), `release_alert_rate_ratio` (candidate / champion; a `max` and a `min` row),
  `release_alert_agreement` (share of transactions with the same alert decision),
  `release_topk_overlap` (share of the champion's top-k cards also in the candidate's top-k),
  `release_precision_ratio` (candidate AP / champion AP on the labelled transactions; the
  monitoring stage computes it on the day whose labels are complete).

The thresholds are `release.criteria` (`RollbackCriteria`); a criterion only judges an arm
with at least `min_rows` paired transactions (and `min_frauds` known frauds for precision).
A violated `release_*` row is a rollback breach (`breaches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cardscore.model.metrics import average_precision
from cardscore.monitoring import stats
from cardscore.monitoring.metrics import MAX, MIN, MetricRow

ARM_CHAMPION, ARM_CANARY, ARM_FALLBACK = "champion", "canary", "fallback"
RELEASE_PREFIX = "release_"
PSI_BINS = 10
# The judged criteria (the rest are descriptive rows without a threshold).
CRITERIA_METRICS = ("release_score_psi", "release_alert_rate_ratio", "release_precision_ratio")


@dataclass(frozen=True)
class Pairs:
    """The transactions scored by both the champion and the candidate."""

    candidate: str | None  # the candidate's version
    champion_version: str | None
    candidate_is_canary: bool
    customer_id: np.ndarray
    champion: np.ndarray
    candidate_scores: np.ndarray
    transaction_id: np.ndarray

    def __len__(self) -> int:
        return len(self.champion)


def pairs_of(frame: pd.DataFrame) -> Pairs:
    """The paired scores of a day's predictions (`transaction_id, customer_id, score, arm,
    model_version, shadow_score, shadow_model_version`)."""
    canary = frame[frame["arm"] == ARM_CANARY]
    champion_arm = frame[frame["arm"] == ARM_CHAMPION]
    candidate = _most_common(canary["model_version"]) if len(canary) else None
    shadowed = champion_arm[champion_arm["shadow_score"].notna()]
    if candidate is None:
        candidate = _most_common(shadowed["shadow_model_version"]) if len(shadowed) else None
    champion_version = _most_common(champion_arm["model_version"]) if len(champion_arm) else (
        _most_common(canary["shadow_model_version"].dropna()) if len(canary) else None)
    a = canary[(canary["model_version"] == candidate) & canary["shadow_score"].notna()]
    b = shadowed[shadowed["shadow_model_version"] == candidate]
    return Pairs(
        candidate=candidate,
        champion_version=champion_version,
        candidate_is_canary=len(canary) > 0,
        customer_id=np.concatenate([a["customer_id"].to_numpy(np.int64), b["customer_id"].to_numpy(np.int64)]),
        champion=np.concatenate([a["shadow_score"].to_numpy(np.float64), b["score"].to_numpy(np.float64)]),
        candidate_scores=np.concatenate([a["score"].to_numpy(np.float64), b["shadow_score"].to_numpy(np.float64)]),
        transaction_id=np.concatenate([a["transaction_id"].to_numpy(np.int64), b["transaction_id"].to_numpy(np.int64)]),
    )


def _most_common(values: pd.Series) -> str | None:
    values = values.dropna().astype(str)
    return None if values.empty else str(values.value_counts().index[0])


def top_k_cards(customer_id: np.ndarray, scores: np.ndarray, k: int) -> set[int]:
    """The k cards with the highest transaction score (a card's risk is its riskiest
    transaction, as card precision@k ranks them); ties broken by card id."""
    if not len(scores):
        return set()
    per_card = pd.Series(scores).groupby(customer_id).max()
    ranked = per_card.reset_index().sort_values([0, "index"], ascending=[False, True])
    return {int(c) for c in ranked["index"].head(k)}


def release_rows(frame: pd.DataFrame, alert_threshold: float, criteria: object, top_k: int,
                 labels: pd.Series | None = None) -> list[MetricRow]:
    """The day's release rows (see the module docstring). `labels`: fraud label (0/1) by
    transaction id, for the transactions whose label is known; `criteria`: a RollbackCriteria."""
    if frame.empty or "arm" not in frame:
        return []
    pairs = pairs_of(frame)
    version = pairs.candidate
    rows: list[MetricRow] = []
    for arm, group in frame.groupby("arm", sort=True):
        scores = group["score"].to_numpy(np.float64)
        rows += [
            MetricRow("release_arm_rows", float(len(group)), str(arm), model_version=version,
                      details={"versions": sorted(group["model_version"].astype(str).unique().tolist())}),
            MetricRow("release_arm_mean_score", float(scores.mean()), str(arm), model_version=version,
                      details={"quantiles": {f"p{q}": float(np.percentile(scores, q)) for q in (10, 50, 90, 99)}}),
            MetricRow("release_arm_alert_rate", float((scores >= alert_threshold).mean()), str(arm),
                      model_version=version),
        ]
    if version is None or not len(pairs):
        return rows
    c = criteria
    judged = len(pairs) >= c.min_rows  # type: ignore[attr-defined]
    details = {"pairs": len(pairs), "champion_version": pairs.champion_version,
               "candidate_role": ARM_CANARY if pairs.candidate_is_canary else "shadow", "judged": judged}

    def bound(value: float | None) -> float | None:
        return value if judged else None

    edges = stats.quantile_edges(pairs.champion, PSI_BINS)
    psi = stats.psi(stats.bin_proportions(pairs.champion, edges), stats.bin_proportions(pairs.candidate_scores, edges))
    rows.append(MetricRow("release_score_psi", float(psi), threshold=bound(c.score_psi), direction=MAX,  # type: ignore[attr-defined]
                          model_version=version, details=details))
    champion_alerts = pairs.champion >= alert_threshold
    candidate_alerts = pairs.candidate_scores >= alert_threshold
    base, new = float(champion_alerts.mean()), float(candidate_alerts.mean())
    # Without a champion alert the base is one alert (a finite ratio that still breaches).
    ratio = new / max(base, 1.0 / len(pairs))
    alert_details = {**details, "champion_alert_rate": base, "candidate_alert_rate": new}
    rows.append(MetricRow("release_alert_rate_ratio", ratio, "max", threshold=bound(c.alert_rate_ratio_max),  # type: ignore[attr-defined]
                          direction=MAX, model_version=version, details=alert_details))
    rows.append(MetricRow("release_alert_rate_ratio", ratio, "min", threshold=bound(c.alert_rate_ratio_min),  # type: ignore[attr-defined]
                          direction=MIN, model_version=version, details=alert_details))
    rows.append(MetricRow("release_alert_agreement", float((champion_alerts == candidate_alerts).mean()),
                          model_version=version, details=details))
    k = min(top_k, len(np.unique(pairs.customer_id)))
    overlap = len(top_k_cards(pairs.customer_id, pairs.champion, k) & top_k_cards(pairs.customer_id, pairs.candidate_scores, k))
    rows.append(MetricRow("release_topk_overlap", overlap / k if k else None, model_version=version,
                          details={**details, "k": k}))
    if labels is not None:
        known = labels.reindex(pairs.transaction_id)
        mask = known.notna().to_numpy()
        y = known.to_numpy()[mask].astype(int)
        frauds = int(y.sum())
        if frauds and len(y) > frauds:
            ap_champion = average_precision(y, pairs.champion[mask])
            ap_candidate = average_precision(y, pairs.candidate_scores[mask])
            ratio = ap_candidate / ap_champion if ap_champion > 0 else None
            rows.append(MetricRow(
                "release_precision_ratio", ratio,
                threshold=c.precision_ratio_min if judged and frauds >= c.min_frauds else None,  # type: ignore[attr-defined]
                direction=MIN, model_version=version,
                details={**details, "known_frauds": frauds, "labelled": len(y),
                         "champion_ap": ap_champion, "candidate_ap": ap_candidate}))
    return rows


def breaches(rows: Sequence[MetricRow]) -> list[MetricRow]:
    """The violated rollback criteria among `rows`."""
    return [r for r in rows if r.metric in CRITERIA_METRICS and r.violated]


def describe_breaches(rows: Sequence[MetricRow]) -> str:
    parts = []
    for r in rows:
        what = f"{r.metric}[{r.subject}]" if r.subject else r.metric
        side = ">" if r.direction == MAX else "<"
        parts.append(f"{what} = {r.value:.4g} {side} {r.threshold:g}")
    return "; ".join(parts)
