"""Run stages for a day with retries, resume and a run ledger (Delta table `ops.pipeline_runs`).

A `Step` is a stage of a composition, with the day offset it works on (the night of day D
builds the snapshot of D+1: `shift_days=1`) and the options the composition passes. The
`StageRunner`:
- skips steps the ledger already records as succeeded for that day (a re-run resumes at the
  step that failed), unless `force` or `from_stage` says otherwise, or the step's inputs
  changed since that success: the versions of the tables its spec declares (`StageSpec.inputs`,
  in the partitions its day reads) and the fingerprints of its other inputs (`observe`), as
  recorded in its ledger row, against the tables now, after the steps before it in the same
  run. Such a step runs again, and so does every step whose inputs it changes; the reason is
  in the progress line, the log (`stage.rerun`) and the ledger row's details (`rerun_reason`);
- retries unexpected errors with exponential backoff (per-stage policy from settings), but
  never a `StageFailed` (a failed gate or a missing input will fail the same way again);
- stops at the first failed step: nothing downstream runs, so nothing downstream is published;
- appends one ledger row per step: status, attempts, duration, input/output table versions,
  model version, details (counts, gate results) and the error.
A single stage run (`cardscore run <stage>`, `spark-submit jobs/<stage>/main.py`) is a
one-step composition of the same runner, recorded under the pipeline name `run`.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from cardscore.core.catalog import PIPELINE_RUNS
from cardscore.core.errors import StageFailed
from cardscore.core.logs import get_logger
from cardscore.core.metrics_file import publish_stage
from cardscore.core.stage import (
    DONE_BEFORE,
    FAILED,
    SKIPPED,
    SUCCEEDED,
    JobContext,
    StageCall,
    StageOutcome,
    StageSpec,
)
from cardscore.core.timing import Progress

log = get_logger("cardscore.pipeline")

__all__ = ["DONE_BEFORE", "FAILED", "SKIPPED", "SUCCEEDED", "Composition", "DayResult", "Reporter",
           "RunLedger", "StageOutcome", "StageRecord", "StageRunner", "Step"]

LEDGER_SCHEMA = (
    "run_id string, pipeline string, day date, stage string, status string, attempts int, "
    "started_at timestamp, finished_at timestamp, duration_s double, inputs string, "
    "outputs string, model_version string, details string, error string"
)


@dataclass(frozen=True)
class Step:
    """A stage inside a composition: which day it works on, and with which options."""

    spec: StageSpec
    shift_days: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    def days_for(self, day: date) -> tuple[date, ...]:
        return (day + timedelta(days=self.shift_days),) if self.spec.dated else ()

    def call_options(self) -> dict[str, Any]:
        return {**self.spec.default_options(), **self.options}


@dataclass(frozen=True)
class Composition:
    """Stages run together for a day, in order (the nightly pipeline, the retraining run)."""

    name: str
    description: str
    steps: tuple[Step, ...]

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


@dataclass
class StageRecord:
    stage: str
    status: str
    attempts: int
    seconds: float
    outcome: StageOutcome | None = None
    error: str | None = None
    exit_code: int = 0  # the StageFailed's own exit code when the stage failed on purpose
    day: date | None = None  # the pipeline day the record is for
    reason: str | None = None  # why a step the ledger had as done ran again, or was not run


@dataclass
class DayResult:
    day: date | None
    run_id: str
    records: list[StageRecord]

    @property
    def failed(self) -> StageRecord | None:
        return next((r for r in self.records if r.status == FAILED), None)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [a for r in self.records if r.outcome is not None for a in r.outcome.alerts]

    @property
    def exit_code(self) -> int:
        failed = self.failed
        return (failed.exit_code or 1) if failed else 0


class Reporter(Protocol):
    def started(self, day: date | None, step: Step) -> None: ...
    def finished(self, day: date | None, record: StageRecord) -> None: ...
    def progress(self, day: date | None, step: Step) -> Progress | None: ...


class LogReporter:
    """Structured log lines only (for schedulers and pipes)."""

    def started(self, day: date | None, step: Step) -> None:
        log.info("stage.started", day=_iso(day), stage=step.name)

    def finished(self, day: date | None, record: StageRecord) -> None:
        log.info("stage.finished", day=_iso(day), stage=record.stage, status=record.status,
                 attempts=record.attempts, seconds=round(record.seconds, 3), error=record.error,
                 reason=record.reason)

    def progress(self, day: date | None, step: Step) -> Progress | None:
        return None


class RunLedger:
    """Append-only Delta table of stage results; the latest row per (pipeline, day, stage) wins."""

    def __init__(self, ctx: JobContext, table: str = PIPELINE_RUNS) -> None:
        self.ctx = ctx
        self.table = table

    def record(
        self, run_id: str, pipeline: str, day: date | None, record: StageRecord, started: datetime,
        lineage: Mapping[str, Any] | None = None,
    ) -> None:
        """Append the step's row; `lineage` (the declared inputs' versions and fingerprints,
        taken before the stage ran) joins the versions the stage itself reported."""
        outcome = record.outcome or StageOutcome()
        details = {**outcome.details, **({"rerun_reason": record.reason} if record.reason else {})}
        row = (
            run_id, pipeline, day, record.stage, record.status, record.attempts, started,
            datetime.now(UTC), record.seconds,
            json.dumps({**outcome.inputs, **(lineage or {})}, sort_keys=True, default=str),
            json.dumps(outcome.outputs, sort_keys=True),
            outcome.model_version,
            json.dumps(details, sort_keys=True, default=str),
            record.error,
        )
        self.ctx.lake.append(self.ctx.spark.createDataFrame([row], LEDGER_SCHEMA), self.table)

    def latest_status(self, pipeline: str, day: date) -> dict[str, str]:
        """Stage name -> status of its latest ledger row for that day."""
        return {stage: row["status"] for stage, row in self.latest(pipeline, day).items()}

    def latest(self, pipeline: str, day: date) -> dict[str, dict[str, Any]]:
        """Stage name -> its latest ledger row for that day (status, finished_at, inputs parsed)."""
        latest: dict[str, dict[str, Any]] = {}
        rows = self._rows(pipeline, day).select("stage", "status", "finished_at", "inputs").collect() if self._exists() else []
        for row in rows:
            if row.stage not in latest or row.finished_at > latest[row.stage]["finished_at"]:
                latest[row.stage] = {"status": row.status, "finished_at": row.finished_at,
                                     "inputs": json.loads(row.inputs or "{}")}
        return latest

    def rows(self, pipeline: str, day: date) -> list[dict[str, Any]]:
        if not self._exists():
            return []
        return [r.asDict() for r in self._rows(pipeline, day).orderBy("finished_at").collect()]

    def _exists(self) -> bool:
        return self.ctx.lake.exists(self.table)

    def _rows(self, pipeline: str, day: date) -> Any:
        return self.ctx.lake.read(self.table).where(
            f"pipeline = '{pipeline}' AND day = DATE'{day.isoformat()}'"
        )


class StageRunner:
    """Runs steps for a day (or undated), with retries, resume and the ledger."""

    def __init__(
        self,
        ctx: JobContext,
        steps: Sequence[Step | StageSpec],
        pipeline: str = "nightly",
        reporter: Reporter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retries: bool = True,
    ) -> None:
        self.steps = [s if isinstance(s, Step) else Step(s) for s in steps]
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in {names}")
        self.ctx = ctx
        self.pipeline = pipeline
        self.reporter = reporter or LogReporter()
        self.ledger = RunLedger(ctx)
        self.retries = retries
        self._sleep = sleep
        self._run_state: dict[str, dict[str, Any]] = {s.name: {} for s in self.steps}

    def stage_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def run_day(self, day: date | None, force: bool = False, from_stage: str | None = None) -> DayResult:
        """Run every step for `day` in order; stop at the first failed step."""
        if from_stage is not None and from_stage not in self.stage_names():
            raise ValueError(f"unknown stage {from_stage!r}; stages are {self.stage_names()}")
        run_id = new_run_id(self.pipeline, day)
        done = {} if force or day is None else self.ledger.latest(self.pipeline, day)
        start_index = self.stage_names().index(from_stage) if from_stage else 0
        result = DayResult(day, run_id, [])
        log.info("pipeline.started", pipeline=self.pipeline, day=_iso(day), run_id=run_id)
        for index, step in enumerate(self.steps):
            days = step.days_for(day) if day else ()
            reason = None
            if index < start_index:
                record = StageRecord(step.name, DONE_BEFORE, 0, 0.0, day=day, reason=f"before --from-stage {from_stage}")
            elif from_stage is None and done.get(step.name, {}).get("status") == SUCCEEDED:
                previous = done[step.name]
                changes = changed_inputs(self.ctx, step.spec, days[0] if days else None, previous["inputs"])
                if not changes:
                    record = StageRecord(step.name, DONE_BEFORE, 0, 0.0, day=day,
                                         reason=f"succeeded at {previous['finished_at']:%Y-%m-%d %H:%M:%S}, inputs unchanged")
                else:
                    record = None
                    reason = "inputs changed since it succeeded: " + "; ".join(changes)
                    log.info("stage.rerun", pipeline=self.pipeline, day=_iso(day), stage=step.name, reason=reason)
            else:
                record = None
            if record is not None:
                result.records.append(record)
                self.reporter.finished(day, record)
                continue
            records = self._run_step(run_id, step, day, days, reason=reason)
            result.records.extend(records)
            if any(r.status == FAILED for r in records):
                break
        failed = result.failed
        log.info("pipeline.finished", pipeline=self.pipeline, day=_iso(day), run_id=run_id,
                 status=FAILED if failed else SUCCEEDED, failed_stage=failed.stage if failed else None)
        return result

    def run_range(self, step: Step, days: Sequence[date]) -> DayResult:
        """One call of a one-pass stage over `days` (a backfill); a ledger row per day."""
        run_id = new_run_id(self.pipeline, days[0])
        return DayResult(days[0], run_id, self._run_step(run_id, step, days[0], tuple(days), ledger_days=days))

    # ------------------------------------------------------------------ one step

    def _run_step(
        self, run_id: str, step: Step, day: date | None, days: tuple[date, ...],
        ledger_days: Sequence[date] | None = None, reason: str | None = None,
    ) -> list[StageRecord]:
        lineage = observed_inputs(self.ctx, step.spec, days)
        policy = self.ctx.settings.pipeline.retry_for(step.name)
        max_attempts = policy.max_attempts if self.retries else 1
        started_at = datetime.now(UTC)
        clock = time.perf_counter()
        self.reporter.started(day, step)
        call = StageCall(self.ctx, days, step.call_options(), self.reporter.progress(day, step),
                         self._run_state[step.name])
        attempt, error, exit_code = 0, None, 0
        outcomes: list[StageOutcome] = []
        status = FAILED
        while attempt < max_attempts:
            attempt += 1
            try:
                returned = step.spec.run(call)
                outcomes = [returned] if isinstance(returned, StageOutcome) else list(returned)
                if not outcomes:
                    outcomes = [StageOutcome()]
                status, error = outcomes[-1].status, None
                break
            except StageFailed as exc:  # a gate or a missing input: retrying cannot help
                error, exit_code = str(exc), exc.exit_code
                report = getattr(exc, "report", None)  # e.g. the rejected model's metrics
                if report is not None:
                    details = report.to_dict() if hasattr(report, "to_dict") else {}
                    outcomes = [StageOutcome(status=FAILED, details=details, report=report)]
                break
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning("stage.attempt_failed", stage=step.name, day=_iso(day), attempt=attempt,
                            max_attempts=max_attempts, error=error, trace=traceback.format_exc(limit=5))
                if attempt < max_attempts:
                    self._sleep(policy.delay(attempt))
        seconds = time.perf_counter() - clock
        per_day = list(ledger_days or [day])
        records = []
        for index, ledger_day in enumerate(per_day):
            outcome = outcomes[index] if index < len(outcomes) else (outcomes[-1] if outcomes else None)
            record = StageRecord(step.name, outcome.status if outcome and not error else status, attempt,
                                 seconds, outcome, error, exit_code, ledger_day, reason)
            try:
                self.ledger.record(run_id, self.pipeline, ledger_day, record, started_at, lineage)
            except Exception as exc:  # the ledger must not hide the stage's own result
                log.error("ledger.write_failed", stage=step.name, error=f"{type(exc).__name__}: {exc}")
            publish_stage(self.ctx.settings, self.pipeline, ledger_day, record)  # Prometheus text file
            records.append(record)
        for ledger_day, record in zip(per_day, records, strict=True):
            self.reporter.finished(ledger_day, record)
        return records


# ---------------------------------------------------------------------- lineage


def observed_inputs(ctx: JobContext, spec: StageSpec, days: Sequence[date]) -> dict[str, Any]:
    """The current versions of the stage's declared input tables and the fingerprints of its
    other inputs for `days`: what its ledger row records, to compare on the next run."""
    state: dict[str, Any] = {}
    try:
        for item in spec.tracked_inputs():
            state[item.table] = ctx.lake.version(item.table)
        if spec.observe is not None:
            for day in days:
                state.update(spec.observe(ctx, day))
    except Exception as exc:  # lineage must never stop a stage: it then just is not compared
        log.warning("lineage.unobserved", stage=spec.name, error=f"{type(exc).__name__}: {exc}")
    return state


def changed_inputs(ctx: JobContext, spec: StageSpec, day: date | None, recorded: Mapping[str, Any]) -> list[str]:
    """What changed among the stage's inputs for work day `day` since the run that recorded
    `recorded`: tables with commits touching the partitions the day reads, changed fingerprints.
    Inputs the row does not record (rows written before lineage was recorded) are not compared."""
    changes = []
    for item in spec.tracked_inputs():
        if item.table not in recorded:
            continue
        was, now = recorded[item.table], ctx.lake.version(item.table)
        if was == now:
            continue
        moved = f"{item.table} {_version(was)} -> {_version(now)}"
        if item.partition is None:
            changes.append(moved)
            continue
        touched = ctx.lake.partitions_changed(item.table, was, item.partition)
        if touched is None:
            changes.append(f"{moved} (history unreadable)")
            continue
        first, last = item.window(day)
        hit = sorted(v for v in touched if _in_window(v, first, last))
        if hit:
            shown = ", ".join(hit[:3]) + (f" and {len(hit) - 3} more" if len(hit) > 3 else "")
            changes.append(f"{moved} ({item.partition} {shown})")
    if spec.observe is not None and day is not None:
        for key, value in spec.observe(ctx, day).items():
            if key in recorded and recorded[key] != value:
                changes.append(f"{key} changed")
    return changes


def _in_window(value: str, first: date | None, last: date | None) -> bool:
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return True  # not a day: cannot place it, so it counts
    return (first is None or day >= first) and (last is None or day <= last)


def _version(version: Any) -> str:
    return "(none)" if version is None else f"v{version}"


def new_run_id(pipeline: str, day: date | None) -> str:
    return f"{pipeline}-{_iso(day) or 'undated'}-{uuid.uuid4().hex[:8]}"


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None
