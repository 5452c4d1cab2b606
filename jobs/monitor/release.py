"""The monitoring stage's release check: the day's comparison per arm and of the candidate
against the champion (`cardscore.monitoring.release`), and the automated rollback: a breached
criterion by the active canary aborts it (share back to 0%) on the registry, recorded as done
by `release.automation_actor` with the breach as the reason; the breach rows are alerts like
every violated monitoring row (log line, webhook, exit code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from cardscore.core import catalog
from cardscore.core.logs import get_logger
from cardscore.core.stage import JobContext
from cardscore.monitoring.metrics import MetricRow
from cardscore.monitoring.release import breaches, describe_breaches, release_rows

COLUMNS = ("transaction_id", "customer_id", "score", "arm", "model_version", "shadow_score", "shadow_model_version")
log = get_logger("jobs.monitor.release")


@dataclass
class ReleaseCheck:
    rows: list[MetricRow] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    aborted: dict[str, Any] | None = None  # the abort event, when the check took the canary back
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any] | None:
        if not self.rows:
            return None
        return {"breaches": self.breaches, "aborted": self.aborted,
                "arms": {r.subject: r.value for r in self.rows if r.metric == "release_arm_rows"}}


def release_check(ctx: JobContext, day: date) -> ReleaseCheck:
    """Compare the arms of day `day`'s predictions and act on a breach (see the module doc)."""
    from pyspark.sql import functions as F

    settings = ctx.settings
    table = settings.scoring.output_table
    out = ReleaseCheck()
    if not ctx.lake.exists(table):
        return out
    predictions = ctx.lake.read(table)
    if "arm" not in predictions.columns:  # a table written before releases
        return out
    day_rows = predictions.where(F.col("tx_date") == F.lit(day)).select(*COLUMNS)
    released = day_rows.where((F.col("arm") == "canary") | F.col("shadow_score").isNotNull())
    if released.limit(1).count() == 0:
        return out  # neither a canary nor a shadow scored the day
    cap = settings.monitoring.current_sample_size
    rows = day_rows.count()
    if rows > cap:  # a bounded, reproducible sample of the day
        day_rows = day_rows.sample(fraction=cap / rows, seed=17)
    frame = day_rows.toPandas()
    labels = None
    if ctx.lake.exists(catalog.SILVER_LABELS):  # the frauds known on D; unlabelled = genuine
        frauds = {int(r["transaction_id"]) for r in ctx.lake.read(catalog.SILVER_LABELS).where(
            (F.col("reported_date") <= F.lit(day)) & F.col("is_fraud")).select("transaction_id")
            .join(day_rows.select("transaction_id"), "transaction_id").collect()}
        ids = frame["transaction_id"]
        labels = pd.Series(ids.isin(frauds).astype(int).to_numpy(), index=ids.to_numpy())
    k = settings.monitoring.top_k or settings.training.protocol.top_k
    out.rows = release_rows(frame, settings.release.alert_threshold, settings.release.criteria, k, labels)
    found = breaches(out.rows)
    if not found:
        return out
    candidate = found[0].model_version
    reason = f"automatic rollback: monitoring {day.isoformat()}: {describe_breaches(found)}"
    out.breaches = [describe_breaches([r]) for r in found]
    log.warning("monitor.release_breach", day=day.isoformat(), version=candidate, breaches=out.breaches)
    role = found[0].details.get("candidate_role")
    if role != "canary":
        out.notes.append(f"release: shadow v{candidate} breached its rollback criteria ({reason}); "
                         "not served, nothing to abort: do not ramp it")
        return out
    if not settings.release.auto_abort:
        out.notes.append(f"release: canary v{candidate} breached ({reason}); release.auto_abort is off")
        return out
    from cardscore.core import release

    try:
        event = release.abort(settings, actor=settings.release.automation_actor, reason=reason,
                              only_version=candidate)
    except Exception as exc:  # the metrics and the alert stand; the next run tries again
        log.error("monitor.release_abort_failed", version=candidate, error=f"{type(exc).__name__}: {exc}")
        out.notes.append(f"release: canary v{candidate} breached but the abort failed: {type(exc).__name__}: {exc}")
        return out
    if event is None:
        out.notes.append(f"release: v{candidate} breached, but it is no longer the active canary")
    else:
        out.aborted = event.to_dict()
        out.notes.append(f"release: canary v{candidate} ABORTED (share 0%) by {event.by}: {reason}")
    return out
