"""The retraining trigger: a composition of the k-of-n decision and the train stage.

    cardscore monitor trigger --date D [--dry-run]
    spark-submit jobs/retrain/main.py --date D [--dry-run]

It fires when a counted metric (`monitoring.trigger.metrics`) violated its threshold on at
least k of the last n monitored days, the latest included (2 of 5 by default, as Databricks
MLOps Stacks do), outside the cool-down after a version it trained. It then trains on the
newest window whose test labels are complete and runs the promotion gate: a passing model
becomes the challenger; promotion stays a decision (`cardscore promote`). The nightly runs it
after monitoring when `monitoring.trigger.enabled`.

A composition may import stages (this one calls the train stage's library function); leaf
stages never import each other (the import contracts in pyproject.toml check it).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from cardscore.core import catalog
from cardscore.core.days import parse_day
from cardscore.core.errors import StageFailed
from cardscore.core.logs import get_logger
from cardscore.core.stage import SKIPPED, Input, JobContext, StageCall, StageOutcome, StageSpec
from cardscore.jobs.retrain.report import summary
from cardscore.jobs.train.stage import TrainingParams, train
from cardscore.monitoring.table import read_rows
from cardscore.monitoring.trigger import TriggerDecision

if TYPE_CHECKING:
    from cardscore.core.config import Settings

STAGE = "retrain"
log = get_logger("jobs.retrain")


@dataclass
class TriggerOutcome:
    decision: TriggerDecision
    training: dict[str, Any] | None = None  # the training report, when it ran
    error: str | None = None  # the gate's rejection or the training failure

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision.to_dict(), "training": self.training, "error": self.error}


def violation_history(ctx: JobContext, day: date, metrics: Sequence[str], n: int) -> dict[date, list[str]]:
    """Day -> the counted metrics that violated their threshold, over the n days up to `day`."""
    frame = read_rows(ctx, day - timedelta(days=n - 1), day)
    if frame.empty:
        return {}
    bad = frame[frame["violated"].astype(bool) & frame["metric"].isin(list(metrics))]
    out: dict[date, list[str]] = {}
    for row in bad.itertuples():
        d = pd.Timestamp(row.day).date()
        out.setdefault(d, []).append(str(row.metric) + (f"[{row.subject}]" if isinstance(row.subject, str) else ""))
    return out


TAG_TRIGGER_DAY = "trigger_day"  # on a version the trigger trained: the monitored day that fired it


def trigger_versions_since(settings: Settings, first: date, last: date) -> list[tuple[str, date]]:
    """(version, day) of the versions the trigger trained for a day in [first, last], newest first."""
    from cardscore.core import registry

    found = []
    for info in registry.list_versions(settings):
        tagged = info.tags.get(TAG_TRIGGER_DAY)
        if not tagged:
            continue
        try:
            day = date.fromisoformat(tagged)
        except ValueError:  # a hand-edited tag must not stop monitoring: name it, count it out
            log.warning("monitor.trigger_tag_invalid", version=info.version, tag=TAG_TRIGGER_DAY)
            continue
        if first <= day <= last:
            found.append((info.version, day))
    return found


def retraining_trigger(ctx: JobContext, day: date, *, dry_run: bool = False,
                       train_start: date | None = None) -> TriggerOutcome:
    """Decide by the k-of-n rule over the monitoring table; when it fires (and not `dry_run`),
    train and run the validation gate (the train stage's `train`): a passing model becomes the
    challenger, promotion stays a decision (`cardscore promote`)."""
    from cardscore.monitoring.trigger import decide, retrain_window_start

    cfg = ctx.settings.monitoring.trigger
    decision = decide(day, violation_history(ctx, day, cfg.metrics, cfg.n), cfg.k, cfg.n, cfg.require_latest)
    if decision.fire:
        recent = trigger_versions_since(ctx.settings, day - timedelta(days=cfg.cooldown_days - 1), day)
        if recent:
            version, trained_for = recent[0]
            decision = replace(decision, fire=False, reason=(
                f"{decision.reason}, but version {version} was trained by the trigger for {trained_for} "
                f"(cool-down of {cfg.cooldown_days} days)"))
    log.info("monitor.trigger", day=day.isoformat(), fire=decision.fire, reason=decision.reason,
             violating_days=decision.violating_days, dry_run=dry_run)
    outcome = TriggerOutcome(decision)
    if not decision.fire or dry_run:
        return outcome
    protocol = ctx.settings.training.protocol
    start = train_start or retrain_window_start(
        day, cfg.train_days or protocol.train_days, protocol.delay_days, protocol.test_days,
        ctx.settings.monitoring.label_delay_days,
    )
    params = TrainingParams(train_start=start, actor="cardscore-monitor",
                            reason=f"retraining trigger on {day}: {decision.reason}",
                            version_tags={TAG_TRIGGER_DAY: day.isoformat()})
    try:
        report = train(ctx, params)
        outcome.training = {"run_id": report.run_id, "version": report.version, "challenger": report.challenger,
                            "train_start": start.isoformat(), "test": report.test.metrics()}
    except StageFailed as exc:  # the gate rejected the model, or an input is missing
        outcome.error = str(exc)
        outcome.training = {"train_start": start.isoformat()}
        version = getattr(getattr(exc, "report", None), "version", None)
        if version is not None:
            outcome.training["version"] = version
    log.info("monitor.retrained", day=day.isoformat(), **(outcome.training or {}), error=outcome.error)
    return outcome


# ------------------------------------------------------------------------------ the stage


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="show the decision; do not train")
    parser.add_argument("--if-enabled", action="store_true",
                        help="skip unless monitoring.trigger.enabled and pipeline.monitoring_enabled "
                        "(the nightly's choice)")
    parser.add_argument("--train-start",
                        help="first training day (default: the latest window whose test labels are complete)")


def run(call: StageCall) -> StageOutcome:
    """The stage: decide for the call's day and train when it fires; a failed training (gate
    rejection, missing input) fails the stage with exit code 1, the decision still recorded."""
    options, settings = call.options, call.ctx.settings
    if options.get("if_enabled") and not (settings.monitoring.trigger.enabled and settings.pipeline.monitoring_enabled):
        return StageOutcome(status=SKIPPED, message="retraining trigger disabled (monitoring.trigger.enabled)")
    start = parse_day(options["train_start"]) if options.get("train_start") else None
    outcome = retraining_trigger(call.ctx, call.day, dry_run=bool(options.get("dry_run")), train_start=start)
    return outcome_of(outcome, bool(options.get("dry_run")))


def outcome_of(outcome: TriggerOutcome, dry_run: bool = False) -> StageOutcome:
    decision = outcome.decision
    message = ("FIRE" if decision.fire else "no retraining") + f": {decision.reason}"
    if dry_run and decision.fire:
        message += " (dry run: nothing trained)"
    if outcome.training:
        message += f"; training: {outcome.training}"
    details = {**outcome.to_dict(), "dry_run": dry_run}
    if outcome.error:
        raise TriggeredTrainingFailed(outcome, details)
    return StageOutcome(details=details, message=message, report=outcome,
                        model_version=(outcome.training or {}).get("version"))


class TriggeredTrainingFailed(StageFailed):
    """The trigger fired but training failed or its gate rejected the model (exit code 1)."""

    def __init__(self, outcome: TriggerOutcome, details: dict[str, Any]) -> None:
        super().__init__(STAGE, outcome.error or "training failed")
        self.report = TriggerReport(outcome, details)


@dataclass
class TriggerReport:
    outcome: TriggerOutcome
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.details


SPEC = StageSpec(
    name=STAGE,
    description="k-of-n retraining trigger: train and gate a challenger when it fires",
    run=run,
    inputs=(Input(catalog.MONITORING, "day", None, 0), "MLflow registry"),
    outputs=("MLflow registry",),
    gates=("promotion gate",),
    add_options=add_options,
    summarize=summary,
)
