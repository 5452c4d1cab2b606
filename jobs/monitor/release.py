"""The monitoring stage's release check: the day's comparison per arm and of the candidate
against the champion (`cardscore.monitoring.release`); the precision criterion on the day whose
labels are complete (D - `monitoring.label_delay_days`, with the frauds reported by D, the row's
`scored_day`); and the automated rollback: a breached
criterion by the active canary aborts it (share back to 0%) on the registry, recorded as done
by `release.automation_actor` with the breach as the reason; the breach rows are alerts like
every violated monitoring row (log line, webhook, exit code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
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
    """Compare the arms of day `day`'s predictions and, for the precision criterion, those of
    the day whose labels are complete (`day - monitoring.label_delay_days`, the frauds reported
    by `day`); act on a breach (see the module doc)."""
    settings = ctx.settings
    out = ReleaseCheck()
    k = settings.monitoring.top_k or settings.training.protocol.top_k
    frame = _released_frame(ctx, day)
    if frame is not None:
        out.rows = [r for r in release_rows(frame, settings.release.alert_threshold, settings.release.criteria, k)]
    labelled_day = day - timedelta(days=settings.monitoring.label_delay_days)
    labelled = _released_frame(ctx, labelled_day) if labelled_day != day else None
    if labelled is not None:
        labels = _labels(ctx, labelled, day)
        for row in release_rows(labelled, settings.release.alert_threshold, settings.release.criteria, k, labels):
            if row.metric == "release_precision_ratio":
                row.scored_day = labelled_day
                out.rows.append(row)
    found = breaches(out.rows)
    if not found:
        return out
    out.breaches = [describe_breaches([r]) for r in found]
    by_version: dict[str | None, list[MetricRow]] = {}
    for row in found:
        by_version.setdefault(row.model_version, []).append(row)
    for candidate, rows in by_version.items():
        _act(ctx, day, str(candidate), rows, out)
    return out


def _released_frame(ctx: JobContext, day: date) -> pd.DataFrame | None:
    """The day's predictions (a bounded sample), or None when no canary or shadow scored it."""
    from pyspark.sql import functions as F

    settings = ctx.settings
    table = settings.scoring.output_table
    if not ctx.lake.exists(table):
        return None
    predictions = ctx.lake.read(table)
    if "arm" not in predictions.columns:  # a table written before releases
        return None
    day_rows = predictions.where(F.col("tx_date") == F.lit(day)).select(*COLUMNS)
    released = day_rows.where((F.col("arm") == "canary") | F.col("shadow_score").isNotNull())
    if released.limit(1).count() == 0:
        return None  # neither a canary nor a shadow scored the day
    cap = settings.monitoring.current_sample_size
    rows = day_rows.count()
    if rows > cap:  # a bounded, reproducible sample of the day
        day_rows = day_rows.sample(fraction=cap / rows, seed=17)
    return day_rows.toPandas()


def _labels(ctx: JobContext, frame: pd.DataFrame, known_on: date) -> pd.Series | None:
    """0/1 per transaction of `frame`: the frauds reported by `known_on`; unlabelled = genuine
    (the project's convention, `cardscore.monitoring.metrics.known_labels`)."""
    from pyspark.sql import functions as F

    if not ctx.lake.exists(catalog.SILVER_LABELS):
        return None
    ids = frame["transaction_id"]
    reported = ctx.lake.read(catalog.SILVER_LABELS).where(
        (F.col("reported_date") <= F.lit(known_on)) & F.col("is_fraud")).select("transaction_id")
    wanted = ctx.spark.createDataFrame([(int(i),) for i in ids.unique()], "transaction_id long")
    frauds = {int(r["transaction_id"]) for r in reported.join(wanted, "transaction_id").collect()}
    return pd.Series(ids.isin(frauds).astype(int).to_numpy(), index=ids.to_numpy())


def _act(ctx: JobContext, day: date, candidate: str, found: list[MetricRow], out: ReleaseCheck) -> None:
    """Abort `candidate` if it is the active canary (a shadow is only alerted: never served)."""
    settings = ctx.settings
    reason = f"automatic rollback: monitoring {day.isoformat()}: {describe_breaches(found)}"
    log.warning("monitor.release_breach", day=day.isoformat(), version=candidate,
                breaches=[describe_breaches([r]) for r in found])
    role = found[0].details.get("candidate_role")
    if role != "canary":
        out.notes.append(f"release: shadow v{candidate} breached its rollback criteria ({reason}); "
                         "not served, nothing to abort: do not ramp it")
        return
    if not settings.release.auto_abort:
        out.notes.append(f"release: canary v{candidate} breached ({reason}); release.auto_abort is off")
        return
    from cardscore.core import release

    try:
        event = release.abort(settings, actor=settings.release.automation_actor, reason=reason,
                              only_version=candidate)
    except Exception as exc:  # the metrics and the alert stand; the next run tries again
        log.error("monitor.release_abort_failed", version=candidate, error=f"{type(exc).__name__}: {exc}")
        out.notes.append(f"release: canary v{candidate} breached but the abort failed: {type(exc).__name__}: {exc}")
        return
    if event is None:
        out.notes.append(f"release: v{candidate} breached, but it is no longer the active canary")
    else:
        out.aborted = event.to_dict()
        out.notes.append(f"release: canary v{candidate} ABORTED (share 0%) by {event.by}: {reason}")
