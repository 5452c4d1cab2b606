"""Settings of the online scoring API (`cardscore serve`, `python -m cardscore.serving`).

Features come from the same online reader as the stream scorer (`features.online_reader`),
the model from the same registry alias watcher; the request contract is `transaction_event`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from cardscore.core.config.base import Section


class ServingSettings(Section):
    """Settings of the online scoring API."""

    host: str = Field("127.0.0.1", description="address the HTTP server binds")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0: any free port)")
    model_alias: str = Field("champion", description="registry alias whose version scores")
    model_poll_seconds: float = Field(
        10.0, gt=0, description="look the alias up again after this many seconds (in the "
        "background: a request never waits for the registry); a moved alias swaps the model"
    )
    model_threads: int = Field(1, ge=1, le=64, description="threads of one model call")
    fresh_features: bool = Field(
        False,
        description="compute each transaction's fresh (event-time) features from the events `cardscore "
        "fresh-stream` stored, united with the transactions this process scored, and serve models of "
        "feature set snapshot_fresh_v1; responses log the values and the stored rows' as-of times. The "
        "API does not own cards as a stream partition does: a card's windows are exact once the "
        "pipeline stored its earlier transactions or this process scored them",
    )
    max_batch: int = Field(100, ge=1, le=10_000, description="most transactions in one request")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="larger request bodies are refused (413) unread"
    )
    top_contributions: int = Field(
        5, ge=0, le=64, description="feature contributions (XGBoost pred_contribs) returned "
        "with each score, largest absolute value first (0: none)"
    )
    retry_initial_seconds: float = Field(
        0.5, gt=0, description="first wait before loading a missing model or online store again"
    )
    retry_max_seconds: float = Field(30.0, gt=0, description="longest wait between those attempts")
    access_log: bool = Field(False, description="uvicorn's per-request access log")

    @model_validator(mode="after")
    def _retry_bounds(self) -> ServingSettings:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must be >= retry_initial_seconds")
        return self
