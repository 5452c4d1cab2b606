"""The stage runner: order, retries with backoff, no retry on gate failures, resume, ledger."""

from __future__ import annotations

from datetime import date

import pytest

from cardscore.core.config import Settings, load_settings
from cardscore.core.errors import StageFailed
from cardscore.core.pipeline import FAILED, SUCCEEDED, StageOutcome, StageRunner
from cardscore.core.stage import JobContext, StageCall, StageSpec, job_context

DAY = date(2018, 4, 10)


@pytest.fixture
def ctx(spark, tmp_path) -> JobContext:

    settings: Settings = load_settings(
        overrides={"home": str(tmp_path / "home"),
                   "pipeline": {"retry": {"max_attempts": 3, "backoff_seconds": 1.5, "backoff_multiplier": 2}}}
    )
    return job_context(settings, spark)


class Calls:
    def __init__(self) -> None:
        self.log: list[str] = []


def writer(calls: Calls, name: str, table: str):
    """A real stage: appends the day to a Delta table and reports the version it wrote."""

    def run(call: StageCall) -> StageOutcome:
        calls.log.append(name)
        df = call.ctx.spark.createDataFrame([(call.day, name)], "day date, stage string")
        version = call.ctx.lake.append(df, table)
        return StageOutcome(outputs={table: version}, details={"rows": 1})

    return StageSpec(name, f"write {table}", run)


def flaky(calls: Calls, name: str, failures: int):
    state = {"left": failures}

    def run(call: StageCall) -> StageOutcome:
        calls.log.append(name)
        if state["left"] > 0:
            state["left"] -= 1
            raise ConnectionError("engine went away")
        return StageOutcome(model_version="3")

    return StageSpec(name, "flaky", run)


def gate_failing(calls: Calls, name: str, broken: dict[str, bool]):
    def run(call: StageCall) -> StageOutcome:
        calls.log.append(name)
        if broken["yes"]:
            raise StageFailed(name, "gate silver_transactions: 1 of 5 expectations failed")
        return StageOutcome()

    return StageSpec(name, "gated", run)


def test_stages_run_in_order_and_the_ledger_records_them(ctx: JobContext) -> None:
    calls, sleeps = Calls(), []
    stages = [writer(calls, "ingest", "silver.t1"), flaky(calls, "score", failures=2), writer(calls, "monitor", "ops.t2")]
    result = StageRunner(ctx, stages, sleep=sleeps.append).run_day(DAY)

    assert result.exit_code == 0
    assert calls.log == ["ingest", "score", "score", "score", "monitor"]
    assert sleeps == [1.5, 3.0]  # exponential backoff between the three attempts
    rows = StageRunner(ctx, stages).ledger.rows("nightly", DAY)
    assert [(r["stage"], r["status"], r["attempts"]) for r in rows] == [
        ("ingest", SUCCEEDED, 1), ("score", SUCCEEDED, 3), ("monitor", SUCCEEDED, 1)
    ]
    assert rows[0]["outputs"] == '{"silver.t1": 0}'
    assert rows[1]["model_version"] == "3"
    assert all(r["duration_s"] >= 0 and r["run_id"] == result.run_id for r in rows)


def test_a_stage_that_keeps_failing_stops_the_run_after_its_attempts(ctx: JobContext) -> None:
    calls = Calls()
    stages = [flaky(calls, "ingest", failures=10), writer(calls, "features", "gold.never")]
    result = StageRunner(ctx, stages, sleep=lambda s: None).run_day(DAY)
    assert result.exit_code == 1
    assert result.failed.stage == "ingest" and result.failed.attempts == 3
    assert "ConnectionError: engine went away" in result.failed.error
    assert calls.log == ["ingest"] * 3
    assert not ctx.lake.exists("gold.never")  # nothing downstream ran or was published


def test_gate_failures_are_not_retried_and_the_rerun_resumes_at_the_failed_stage(ctx: JobContext) -> None:
    calls, broken = Calls(), {"yes": True}
    stages = [writer(calls, "ingest", "silver.t3"), gate_failing(calls, "features", broken),
              writer(calls, "score", "gold.t4")]
    first = StageRunner(ctx, stages, sleep=lambda s: None).run_day(DAY)
    assert first.exit_code == 1 and first.failed.stage == "features" and first.failed.attempts == 1
    assert calls.log == ["ingest", "features"]
    assert not ctx.lake.exists("gold.t4")

    broken["yes"] = False  # the fix
    second = StageRunner(ctx, stages, sleep=lambda s: None).run_day(DAY)
    assert second.exit_code == 0
    assert calls.log == ["ingest", "features", "features", "score"]  # ingest was not redone
    assert [r.status for r in second.records] == ["done-before", SUCCEEDED, SUCCEEDED]
    assert ctx.lake.read("silver.t3").count() == 1

    forced = StageRunner(ctx, stages, sleep=lambda s: None).run_day(DAY, force=True)
    assert forced.exit_code == 0 and calls.log[-3:] == ["ingest", "features", "score"]

    StageRunner(ctx, stages, sleep=lambda s: None).run_day(DAY, from_stage="score")
    assert calls.log[-1] == "score" and len(calls.log) == 8

    ledger = StageRunner(ctx, stages).ledger
    assert ledger.latest_status("nightly", DAY) == {"ingest": SUCCEEDED, "features": SUCCEEDED, "score": SUCCEEDED}
    assert next(r["status"] for r in ledger.rows("nightly", DAY) if r["stage"] == "features") == FAILED


def test_unknown_from_stage_is_a_clear_error(ctx: JobContext) -> None:
    with pytest.raises(ValueError, match="unknown stage 'scoring'"):
        StageRunner(ctx, [writer(Calls(), "score", "gold.t5")]).run_day(DAY, from_stage="scoring")
