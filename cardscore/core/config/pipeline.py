"""Settings of the nightly pipeline orchestration."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, field_validator

from cardscore.core.config.base import Section


class RetryPolicy(Section):
    """How often a stage is retried after an unexpected error (gate failures are never retried)."""

    max_attempts: int = Field(3, ge=1, le=20, description="attempts including the first")
    backoff_seconds: float = Field(5.0, ge=0, description="wait before the second attempt")
    backoff_multiplier: float = Field(2.0, ge=1.0, description="growth of the wait per attempt")
    max_backoff_seconds: float = Field(300.0, ge=0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.backoff_seconds * self.backoff_multiplier ** (attempt - 1), self.max_backoff_seconds)


class PipelineSettings(Section):
    """Settings of the nightly pipeline orchestration."""

    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="default for every stage")
    stage_retry: dict[str, RetryPolicy] = Field(
        default_factory=dict, description="per-stage overrides, keyed by stage name"
    )
    monitoring_enabled: bool = Field(True, description="run the monitoring stage at the end")
    metrics_dir: str | None = Field(
        None, description="folder of the Prometheus text file the runner rewrites after every stage "
        "(cardscore_<pipeline>.prom, for node-exporter's textfile collector or a Pushgateway); "
        "None: <home>/metrics",
    )
    clock: datetime | None = Field(
        None,
        description="the pipeline's notion of now (UTC), for the day-sanity checks of ingest; null: the "
        "system clock. Set it to replay or test a period as if it were the present",
    )

    @field_validator("clock")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a clock without a zone is UTC, like every timestamp here
        return value.astimezone(UTC) if value is not None else None

    def now(self) -> datetime:
        """The pipeline's clock: `clock` when set, else the system clock (UTC)."""
        return self.clock or datetime.now(UTC)

    def retry_for(self, stage: str) -> RetryPolicy:
        return self.stage_retry.get(stage, self.retry)
