"""Lineage-aware reruns in the runner: a stage the ledger records as done runs again when the
input partitions its day reads changed since (real Delta tables, real ledger), and says why."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from cardscore.core.config import load_settings
from cardscore.core.pipeline import (
    DONE_BEFORE,
    SUCCEEDED,
    StageOutcome,
    StageRecord,
    StageRunner,
    Step,
)
from cardscore.core.stage import Input, JobContext, StageCall, StageSpec, job_context

D = date(2018, 4, 10)
SOURCE, DERIVED = "silver.events", "gold.daily"


@pytest.fixture
def ctx(spark, tmp_path) -> JobContext:
    settings = load_settings(overrides={"home": str(tmp_path / "home"), "pipeline": {"retry": {"max_attempts": 1}}})
    return job_context(settings, spark)


def put(ctx: JobContext, day: date, value: int) -> None:
    """Replace one day of the source table (what an upstream correction does)."""
    frame = ctx.spark.createDataFrame([(day, value)], "day date, value long")
    ctx.lake.replace_where(frame, SOURCE, f"day = DATE'{day.isoformat()}'", partition_by=["day"])


class Stages:
    """Two real stages: `load` (no declared inputs) writes nothing; `derive` sums the source's
    previous 3 days (like a feature snapshot of X built from X-3 .. X-1) into a gold table."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fingerprint = {"landing": "a"}

    def load(self, call: StageCall) -> StageOutcome:
        self.calls.append("load")
        return StageOutcome()

    def derive(self, call: StageCall) -> StageOutcome:
        self.calls.append("derive")
        day = call.day
        total = call.ctx.lake.read(SOURCE).where(
            f"day BETWEEN DATE'{(day - timedelta(days=3)).isoformat()}' AND DATE'{(day - timedelta(days=1)).isoformat()}'"
        ).groupBy().sum("value").first()[0]
        frame = call.ctx.spark.createDataFrame([(day, int(total or 0))], "day date, total long")
        version = call.ctx.lake.replace_where(frame, DERIVED, f"day = DATE'{day.isoformat()}'", partition_by=["day"])
        return StageOutcome(outputs={DERIVED: version})

    def steps(self) -> list[Step]:
        load = StageSpec("load", "observe a landing day", self.load, inputs=("landing",),
                         observe=lambda ctx, day: dict(self.fingerprint))
        derive = StageSpec("derive", "sum of the 3 days before", self.derive,
                           inputs=(Input(SOURCE, "day", -3, -1),))
        return [Step(load), Step(derive, shift_days=1)]  # like the nightly's features step


def statuses(result) -> dict[str, str]:
    return {r.stage: r.status for r in result.records}


def test_a_done_stage_reruns_when_its_input_partitions_change_and_says_why(ctx: JobContext) -> None:
    for offset in range(4):
        put(ctx, D - timedelta(days=offset), 1)
    stages = Stages()
    runner = lambda: StageRunner(ctx, stages.steps(), pipeline="lineage", sleep=lambda s: None)  # noqa: E731

    first = runner().run_day(D)
    assert statuses(first) == {"load": SUCCEEDED, "derive": SUCCEEDED}
    assert ctx.lake.read(DERIVED).first().total == 3  # D-2 .. D for the snapshot of D+1

    again = runner().run_day(D)  # nothing changed
    assert statuses(again) == {"load": DONE_BEFORE, "derive": DONE_BEFORE}
    assert "inputs unchanged" in again.records[1].reason
    assert stages.calls == ["load", "derive"]

    put(ctx, D + timedelta(days=1), 5)  # a later day: outside what the snapshot of D+1 reads
    put(ctx, D - timedelta(days=5), 5)  # an earlier one, before its window
    assert statuses(runner().run_day(D)) == {"load": DONE_BEFORE, "derive": DONE_BEFORE}

    put(ctx, D - timedelta(days=1), 7)  # inside the window: the snapshot is stale
    healed = runner().run_day(D)
    assert statuses(healed) == {"load": DONE_BEFORE, "derive": SUCCEEDED}
    reason = healed.records[1].reason
    assert reason.startswith("inputs changed since it succeeded: silver.events v") and "(day 2018-04-09)" in reason
    assert ctx.lake.read(DERIVED).first().total == 9
    ledger = StageRunner(ctx, stages.steps(), pipeline="lineage").ledger.rows("lineage", D)
    assert json.loads(ledger[-1]["details"])["rerun_reason"] == reason
    assert json.loads(ledger[-1]["inputs"])[SOURCE] == ctx.lake.version(SOURCE)

    stages.fingerprint = {"landing": "b"}  # a file delivered to the day after it was loaded
    observed = runner().run_day(D)
    assert statuses(observed)["load"] == SUCCEEDED
    assert observed.records[0].reason == "inputs changed since it succeeded: landing changed"
    assert statuses(observed)["derive"] == DONE_BEFORE  # the load wrote nothing it reads

    forced = runner().run_day(D, force=True)  # --force still re-runs everything
    assert statuses(forced) == {"load": SUCCEEDED, "derive": SUCCEEDED}
    assert stages.calls == ["load", "derive", "derive", "load", "load", "derive"]


def test_a_rerun_of_an_upstream_stage_carries_its_changes_downstream(ctx: JobContext) -> None:
    """The upstream stage writes the partition the downstream one reads, in the same run."""
    for offset in range(4):
        put(ctx, D - timedelta(days=offset), 1)
    stages = Stages()
    value = {"now": 1}

    def load(call: StageCall) -> StageOutcome:
        stages.calls.append("load")
        put(call.ctx, call.day, value["now"])
        return StageOutcome()

    load_spec = StageSpec("load", "land the day", load, inputs=("landing",),
                          observe=lambda ctx, day: dict(stages.fingerprint))
    steps = [Step(load_spec), stages.steps()[1]]
    StageRunner(ctx, steps, pipeline="lineage2").run_day(D)
    value["now"], stages.fingerprint = 10, {"landing": "corrected"}
    result = StageRunner(ctx, steps, pipeline="lineage2").run_day(D)
    assert statuses(result) == {"load": SUCCEEDED, "derive": SUCCEEDED}
    assert "(day 2018-04-10)" in result.records[1].reason
    assert ctx.lake.read(DERIVED).first().total == 12


def test_rows_recorded_without_lineage_are_taken_as_done(ctx: JobContext) -> None:
    """Ledger rows from before lineage was recorded name no input versions: nothing to compare."""
    stages = Stages()
    put(ctx, D, 1)
    ledger = StageRunner(ctx, stages.steps(), pipeline="old").ledger
    for name in ("load", "derive"):
        ledger.record("old-run", "old", D, StageRecord(name, SUCCEEDED, 1, 0.1, StageOutcome()), datetime.now(UTC))
    put(ctx, D - timedelta(days=1), 3)
    assert statuses(StageRunner(ctx, stages.steps(), pipeline="old").run_day(D)) == {"load": DONE_BEFORE, "derive": DONE_BEFORE}
