"""Settings of safe model releases (`cardscore release ...`): the rule-based fallback every
scorer serves when frozen or when no model can be loaded, the score that counts as an alert,
and the rollback criteria that abort a canary by themselves.

The release *state* (shadow and canary versions, canary share, frozen) is not a setting: it
lives in the MLflow registry so every scorer process agrees (`cardscore.core.release`).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from cardscore.core.config.base import Section


class FallbackRules(Section):
    """The documented rule-based fallback (`cardscore.model.fallback`): each rule that fires gives
    its score, the highest wins; when none fires the score is `low_score` times the largest
    ratio value/threshold (so the fallback still ranks transactions for a top-k review)."""

    amount_threshold: float = Field(
        220.0, gt=0, description="amount rule: a transaction above this amount is suspicious")
    amount_score: float = Field(0.9, ge=0, le=1, description="score when the amount rule fires")
    terminal_risk_threshold: float = Field(
        0.2, gt=0, le=1, description="terminal rule: share of known frauds at the terminal over its "
        "(delayed) 7-day window, terminal_id_risk_7day_window, at or above which it is suspicious")
    terminal_risk_score: float = Field(0.8, ge=0, le=1, description="score when the terminal rule fires")
    spending_ratio_threshold: float = Field(
        3.0, gt=1, description="spending rule: amount above this many times the card's 30-day mean "
        "amount (cards with history only)")
    spending_min_amount: float = Field(
        50.0, ge=0, description="spending rule: only amounts above this (small purchases never fire)")
    spending_score: float = Field(0.6, ge=0, le=1, description="score when the spending rule fires")
    low_score: float = Field(
        0.1, ge=0, le=1, description="ceiling of the score when no rule fires (0: every quiet "
        "transaction scores 0)")

    @model_validator(mode="after")
    def _low_below_rules(self) -> FallbackRules:
        if self.low_score > min(self.amount_score, self.terminal_risk_score, self.spending_score):
            raise ValueError("low_score must not exceed any rule's score")
        return self


class RollbackCriteria(Section):
    """Bounds a canary (or a shadow) must keep against the champion. The monitoring stage
    checks them every day on the batch scorer's arms (and on the stream scorer's per-arm
    metrics when `monitoring.stream_metrics_url` is set); the stream scorer checks the error
    rate and latency continuously on its own metrics. A breach by the canary aborts it (share
    back to 0%) by itself, records who/why/when on the registry and raises the alert. None
    turns a criterion off."""

    error_rate: float | None = Field(
        0.01, ge=0, le=1, description="highest share of the canary's transactions whose scoring "
        "failed (served by the champion or the fallback instead)")
    p99_latency_seconds: float | None = Field(
        0.25, gt=0, description="highest p99 of the canary model's predict call (per batch, stream "
        "and API)")
    score_psi: float | None = Field(
        0.25, gt=0, description="highest PSI of the candidate's scores against the champion's on "
        "the same transactions (the champion's quantile bins)")
    alert_rate_ratio_max: float | None = Field(
        2.0, gt=1, description="highest ratio of the candidate's alert rate (scores >= "
        "release.alert_threshold) to the champion's, on the same transactions")
    alert_rate_ratio_min: float | None = Field(
        0.5, gt=0, lt=1, description="lowest such ratio (a model that stops alerting misses fraud)")
    precision_ratio_min: float | None = Field(
        0.5, gt=0, le=1, description="lowest ratio of the candidate's average precision to the "
        "champion's on the same transactions with the labels known (delayed labels)")
    min_rows: int = Field(
        200, ge=1, description="transactions an arm needs on a day before the score criteria judge it")
    min_frauds: int = Field(
        5, ge=1, description="known frauds among them before the precision criterion judges it")
    stream_min_batches: int = Field(
        20, ge=1, description="stream: canary batches scored before its error rate and latency are judged")
    stream_window_batches: int = Field(
        200, ge=10, description="stream: the continuous check looks at the canary's last this many batches")


class ReleaseSettings(Section):
    """Safe model releases: shadow, canary, kill switch and automatic rollback."""

    alert_threshold: float = Field(
        0.5, gt=0, lt=1, description="a score at or above this is an alert (the decision the "
        "alert-rate criterion and the comparison report count)")
    auto_abort: bool = Field(
        True, description="a criterion breached by the canary aborts it by itself (false: only alert)")
    automation_actor: str = Field(
        "cardscore-release-guard", description="who the registry records for automatic aborts")
    fallback: FallbackRules = Field(default_factory=FallbackRules)
    criteria: RollbackCriteria = Field(default_factory=RollbackCriteria)
