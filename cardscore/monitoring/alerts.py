"""Alerts: a violated threshold becomes a structured log line and, optionally, a webhook POST.

The webhook never fails the job: a slow, refusing or erroring endpoint is logged and the
job's own result (exit code 1 for an alert) stands. Its URL and headers come from settings,
where secrets may only appear as `${env:NAME}` references (resolved when settings load).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from cardscore.core.logs import get_logger
from cardscore.monitoring.metrics import MetricRow

log = get_logger("monitoring.alerts")


@dataclass(frozen=True)
class Alert:
    day: str
    metric: str
    feature: str | None  # the feature, when the metric is about one
    subject: str | None  # the feature, table or counter the metric is about
    value: float | None
    threshold: float
    direction: str  # max: the value exceeded the bound; min: it fell below it
    model_version: str | None = None
    scored_day: str | None = None

    @classmethod
    def of(cls, day: date, row: MetricRow) -> Alert:
        assert row.threshold is not None
        return cls(
            day=day.isoformat(),
            metric=row.metric,
            feature=row.subject if row.is_feature_metric() else None,
            subject=row.subject,
            value=row.value,
            threshold=row.threshold,
            direction=row.direction,
            model_version=row.model_version,
            scored_day=row.scored_day.isoformat() if row.scored_day else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        what = f"{self.metric}[{self.subject}]" if self.subject else self.metric
        side = ">" if self.direction == "max" else "<"
        value = "missing" if self.value is None else f"{self.value:.4g}"
        about = f" (scored day {self.scored_day}, v{self.model_version})" if self.scored_day else ""
        return f"{what} = {value} {side} threshold {self.threshold:g}{about}"


def alerts_of(day: date, rows: Iterable[MetricRow]) -> list[Alert]:
    return [Alert.of(day, r) for r in rows if r.violated]


def log_alerts(alerts: Iterable[Alert]) -> None:
    for alert in alerts:
        log.warning("monitor.alert", **alert.to_dict())


def post_webhook(
    url: str, payload: Mapping[str, Any], timeout: float = 5.0, headers: Mapping[str, str] | None = None
) -> bool:
    """POST `payload` as JSON; True on a 2xx answer. Every error is logged, never raised; the
    URL is logged without its path and query (they may carry a token)."""
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "cardscore-monitor", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            ok = 200 <= response.status < 300
            log.info("monitor.webhook_sent", endpoint=where, status=response.status, alerts=len(payload.get("alerts", [])))
            return ok
    except urllib.error.HTTPError as exc:
        log.error("monitor.webhook_failed", endpoint=where, status=exc.code, error=str(exc.reason))
    except Exception as exc:  # timeouts, refused connections, bad URLs: never fail the job
        log.error("monitor.webhook_failed", endpoint=where, error=f"{type(exc).__name__}: {exc}")
    return False
