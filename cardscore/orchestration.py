"""Run a sequence of stages for a day with retries, resume and a run ledger (Delta table).

Each stage is a function `(JobContext, day) -> StageOutcome`. The runner:
- skips stages the ledger already records as succeeded for that day (so a re-run resumes at
  the stage that failed), unless `force` or `from_stage` says otherwise;
- retries unexpected errors with exponential backoff (per-stage policy from settings), but
  never a `StageFailed` (a failed gate or a missing input will fail the same way again);
- stops at the first failed stage: nothing downstream runs, so nothing downstream is published;
- appends one ledger row per stage attempt series: status, attempts, duration, input/output
  table versions, model version, details (counts, gate results) and the error.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from cardscore.catalog import PIPELINE_RUNS
from cardscore.errors import StageFailed
from cardscore.jobrunner import JobContext
from cardscore.logs import get_logger
from cardscore.metrics_file import publish_stage

log = get_logger("orchestration")

SUCCEEDED, FAILED, SKIPPED = "succeeded", "failed", "skipped"

LEDGER_SCHEMA = (
    "run_id string, pipeline string, day date, stage string, status string, attempts int, "
    "started_at timestamp, finished_at timestamp, duration_s double, inputs string, "
    "outputs string, model_version string, details string, error string"
)


@dataclass
class StageOutcome:
    """What a stage reports. `status` is succeeded, or skipped when there was nothing to do."""

    status: str = SUCCEEDED
    inputs: dict[str, int | None] = field(default_factory=dict)
    outputs: dict[str, int | None] = field(default_factory=dict)
    model_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[JobContext, date], StageOutcome | None]


@dataclass
class StageRecord:
    stage: str
    status: str
    attempts: int
    seconds: float
    outcome: StageOutcome | None = None
    error: str | None = None


@dataclass
class DayResult:
    day: date
    run_id: str
    records: list[StageRecord]

    @property
    def failed(self) -> StageRecord | None:
        return next((r for r in self.records if r.status == FAILED), None)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Reporter(Protocol):
    def started(self, day: date, stage: Stage) -> None: ...
    def finished(self, day: date, record: StageRecord) -> None: ...


class LogReporter:
    """Structured log lines only (for schedulers and pipes)."""

    def started(self, day: date, stage: Stage) -> None:
        log.info("stage.started", day=day.isoformat(), stage=stage.name)

    def finished(self, day: date, record: StageRecord) -> None:
        log.info(
            "stage.finished",
            day=day.isoformat(),
            stage=record.stage,
            status=record.status,
            attempts=record.attempts,
            seconds=round(record.seconds, 3),
            error=record.error,
        )


class RunLedger:
    """Append-only Delta table of stage results; the latest row per (pipeline, day, stage) wins."""

    def __init__(self, ctx: JobContext, table: str = PIPELINE_RUNS) -> None:
        self.ctx = ctx
        self.table = table

    def record(
        self, run_id: str, pipeline: str, day: date, record: StageRecord, started: datetime
    ) -> None:
        outcome = record.outcome or StageOutcome()
        row = (
            run_id,
            pipeline,
            day,
            record.stage,
            record.status,
            record.attempts,
            started,
            datetime.now(UTC),
            record.seconds,
            json.dumps(outcome.inputs, sort_keys=True),
            json.dumps(outcome.outputs, sort_keys=True),
            outcome.model_version,
            json.dumps(outcome.details, sort_keys=True, default=str),
            record.error,
        )
        df = self.ctx.spark.createDataFrame([row], LEDGER_SCHEMA)
        self.ctx.lake.append(df, self.table)

    def latest_status(self, pipeline: str, day: date) -> dict[str, str]:
        """Stage name -> status of its latest ledger row for that day."""
        if not self.ctx.lake.exists(self.table):
            return {}
        rows = (
            self.ctx.lake.read(self.table)
            .where(f"pipeline = '{pipeline}' AND day = DATE'{day.isoformat()}'")
            .select("stage", "status", "finished_at")
            .collect()
        )
        latest: dict[str, tuple[datetime, str]] = {}
        for row in rows:
            if row.stage not in latest or row.finished_at > latest[row.stage][0]:
                latest[row.stage] = (row.finished_at, row.status)
        return {stage: status for stage, (_, status) in latest.items()}

    def rows(self, pipeline: str, day: date) -> list[dict[str, Any]]:
        if not self.ctx.lake.exists(self.table):
            return []
        df = self.ctx.lake.read(self.table).where(
            f"pipeline = '{pipeline}' AND day = DATE'{day.isoformat()}'"
        )
        return [r.asDict() for r in df.orderBy("finished_at").collect()]


class PipelineRunner:
    def __init__(
        self,
        ctx: JobContext,
        stages: Sequence[Stage],
        pipeline: str = "nightly",
        reporter: Reporter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in {names}")
        self.ctx = ctx
        self.stages = list(stages)
        self.pipeline = pipeline
        self.reporter = reporter or LogReporter()
        self.ledger = RunLedger(ctx)
        self._sleep = sleep

    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def run_day(self, day: date, force: bool = False, from_stage: str | None = None) -> DayResult:
        if from_stage is not None and from_stage not in self.stage_names():
            raise ValueError(f"unknown stage {from_stage!r}; stages are {self.stage_names()}")
        run_id = f"{self.pipeline}-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        done = {} if force else self.ledger.latest_status(self.pipeline, day)
        start_index = self.stage_names().index(from_stage) if from_stage else 0
        result = DayResult(day, run_id, [])
        log.info("pipeline.started", pipeline=self.pipeline, day=day.isoformat(), run_id=run_id)
        for index, stage in enumerate(self.stages):
            if index < start_index or (from_stage is None and done.get(stage.name) == SUCCEEDED):
                record = StageRecord(stage.name, "done-before", 0, 0.0)
                result.records.append(record)
                self.reporter.finished(day, record)
                continue
            record = self._run_stage(run_id, day, stage)
            result.records.append(record)
            if record.status == FAILED:
                break
        log.info(
            "pipeline.finished",
            pipeline=self.pipeline,
            day=day.isoformat(),
            run_id=run_id,
            status=FAILED if result.failed else SUCCEEDED,
            failed_stage=result.failed.stage if result.failed else None,
        )
        return result

    def _run_stage(self, run_id: str, day: date, stage: Stage) -> StageRecord:
        policy = self.ctx.settings.pipeline.retry_for(stage.name)
        started_at = datetime.now(UTC)
        clock = time.perf_counter()
        self.reporter.started(day, stage)
        attempt, error = 0, None
        outcome: StageOutcome | None = None
        status = FAILED
        while attempt < policy.max_attempts:
            attempt += 1
            try:
                outcome = stage.run(self.ctx, day) or StageOutcome()
                status, error = outcome.status, None
                break
            except StageFailed as exc:  # a gate or a missing input: retrying cannot help
                error = str(exc)
                break
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "stage.attempt_failed",
                    stage=stage.name,
                    day=day.isoformat(),
                    attempt=attempt,
                    max_attempts=policy.max_attempts,
                    error=error,
                    trace=traceback.format_exc(limit=5),
                )
                if attempt < policy.max_attempts:
                    self._sleep(policy.delay(attempt))
        record = StageRecord(stage.name, status, attempt, time.perf_counter() - clock, outcome, error)
        try:
            self.ledger.record(run_id, self.pipeline, day, record, started_at)
        except Exception as exc:  # the ledger must not hide the stage's own result
            log.error("ledger.write_failed", stage=stage.name, error=f"{type(exc).__name__}: {exc}")
        publish_stage(self.ctx.settings, self.pipeline, day, record)  # Prometheus text file
        self.reporter.finished(day, record)
        return record
