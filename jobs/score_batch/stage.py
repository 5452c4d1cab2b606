"""Score a day's transactions in batch: silver -> Feast features -> champion model -> predictions.

    spark-submit jobs/score_batch/main.py --date 2018-05-01
    spark-submit jobs/score_batch/main.py --from 2018-05-01 --to 2018-05-31      # backfill
    cardscore run score --date 2018-05-01

For each day D: the silver transactions of D are served D's snapshot rows of their customer
and terminal by an equi-join in the engine (`features.serving.day_features`: every transaction
of D is served D's snapshot, which is what Feast's point-in-time retrieval of the training sets
gives for them, tested equal), with the request-time flags as column expressions generated
from `features.request_time`; the model scores inside the engine in one Python pass
(mapInArrow with the native booster). The model version is resolved ONCE at the start of the run from the
`scoring.model_alias` alias (default `champion`), loaded by version, and recorded on every
row, whatever the alias does meanwhile.

Write-audit-publish: the day's predictions are staged, gated with Great Expectations
(`expectations/suites/predictions.json`: one row per silver transaction, unique ids, scores in
[0, 1], the resolved version on every row), and only then replace day D in the predictions
table (`replaceWhere tx_date = D`), so a re-run replaces the day exactly and a failed gate
leaves the published table untouched (exit code 1, naming the failed expectations).

No model under the alias yet: `MissingInput` (exit 1) saying to train and promote one, or,
with `--if-no-model skip` (the nightly's choice), a *skipped* stage.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardscore.core import catalog
from cardscore.core.config.settings import join_uri
from cardscore.core.errors import MissingInput, StageFailed
from cardscore.core.lake import discard_staging
from cardscore.core.logs import get_logger
from cardscore.core.stage import Input, JobContext, StageCall, StageOutcome, StageSpec
from cardscore.core.timing import PhaseTimer, Progress
from cardscore.expectations.gate import GateFailed, GateResult
from cardscore.features.definitions import CUSTOMER_KEY, SNAPSHOT_DATE, TERMINAL_KEY
from cardscore.features.feature_sets import FEATURE_SETS
from cardscore.jobs.score_batch.report import summary_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from cardscore.core.registry import ModelRef
    from cardscore.model.release import PortablePlan

STAGE = "score"
SUITE = "predictions"
PARTITION = "tx_date"
log = get_logger("jobs.score_batch")


@dataclass(frozen=True)
class ScoringModel:
    """What a run scores with, resolved once: the champion (loaded by version) and the release
    around it (canary and share, shadow, frozen), shipped to the engine's tasks as one plan.

    `ref` is the champion (None when the rules serve because no champion could be loaded);
    `plan` the boosters as bytes (`cardscore.model.release.PortablePlan`)."""

    ref: ModelRef | None
    plan: PortablePlan
    versions: dict[str, str | None] = field(default_factory=dict)  # role -> version
    fallback_reason: str | None = None
    errors: dict[str, str] = field(default_factory=dict)  # role -> why it was left out

    @property
    def uses_fresh(self) -> bool:
        """Whether a model of the plan reads fresh features (gold.fresh_features)."""
        from cardscore.features.definitions import MODEL_FEATURES

        return self.plan.layout != MODEL_FEATURES

    @property
    def name(self) -> str:
        from cardscore.model.fallback import FALLBACK_MODEL_NAME

        return self.ref.name if self.ref is not None and self.fallback_reason is None else FALLBACK_MODEL_NAME

    @property
    def version(self) -> str:
        from cardscore.model.fallback import FALLBACK_VERSION

        return self.ref.version if self.ref is not None and self.fallback_reason is None else FALLBACK_VERSION

    @property
    def raw(self) -> bytes:
        """The champion's booster as UBJSON (what `score_in_engine` takes)."""
        assert self.plan.champion is not None, "no champion was loaded"
        return self.plan.champion[2]

    def served_versions(self) -> list[str]:
        """Every model version a row of the run may name (the gate's allowed set)."""
        from cardscore.model.fallback import FALLBACK_VERSION

        if self.fallback_reason is not None:
            return [FALLBACK_VERSION]
        return [v for v in (self.versions.get("champion"), self.versions.get("canary")) if v]


@dataclass
class ScoreHooks:
    """Test seams; production runs pass none.

    `after_model_resolved(ref)` runs between the alias lookup and the load (a test moves the
    alias there); `before_stage(df)` may change the day's predictions before they are staged
    (a test plants a bad row to see the gate stop it).
    """

    after_model_resolved: Callable[[ModelRef], None] | None = None
    before_stage: Callable[[DataFrame], DataFrame] | None = None


@dataclass(frozen=True)
class ScoreReport:
    """What one day's scoring published."""

    day: date
    run_id: str
    model_name: str
    model_version: str
    rows: int
    silver_rows: int
    unknown_customers: int
    unknown_terminals: int
    defaults_only: int  # rows whose customer and terminal were both unknown
    mean_score: float | None
    output_table: str
    inputs: dict[str, int | None]  # table -> Delta version read
    output_version: int | None
    gate: str
    seconds: float
    phase_seconds: dict[str, float] = field(default_factory=dict)
    arms: dict[str, int] = field(default_factory=dict)  # arm -> rows it served
    release: dict[str, Any] = field(default_factory=dict)  # versions by role, fallback reason, errors

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out

    def outcome(self) -> StageOutcome:
        """The report in the runner's shape."""
        details = self.to_dict()
        for key in ("inputs", "model_version"):
            details.pop(key)
        return StageOutcome(
            inputs=dict(self.inputs),
            outputs={self.output_table: self.output_version},
            model_version=self.model_version,
            details=details,
            message=f"{self.rows} transactions scored by {self.model_name} v{self.model_version}"
            + (f" (arms: {', '.join(f'{a} {n}' for a, n in sorted(self.arms.items()))})"
               if set(self.arms) - {"champion"} else ""),
            report=self,
        )


class PredictionsGateFailed(GateFailed):
    """The predictions gate failed; nothing was published. The staged rows are kept."""

    def __init__(self, result: GateResult, staging: str) -> None:
        StageFailed.__init__(
            self, STAGE, f"{result.summary()}\nstaged predictions kept for inspection: {staging}"
        )
        self.result = result
        self.staging = staging


# ------------------------------------------------------------------------------ the model


def resolve_model(ctx: JobContext, hooks: ScoreHooks | None = None) -> ScoringModel:
    """The release now (`cardscore.core.release.read_view`: the champion and the release state
    in one registry call), every version loaded by version: `MissingInput` while the model has
    no champion at all (and is not frozen). Frozen, or a champion that cannot be loaded (or a
    registry that cannot be read): the rule-based fallback scores the run, every row flagged.
    A canary or shadow that cannot be loaded is left out and reported."""
    from cardscore.core import registry, release
    from cardscore.model.release import build_plan, fallback_plan

    settings = ctx.settings
    alias = settings.scoring.model_alias
    try:
        view = release.read_view(settings)
        if alias != registry.CHAMPION:  # shadow scoring into another table, the pre-release way
            other = registry.resolve_alias(settings, alias)
            view = replace(view, champion=other.version, state=release.ReleaseState())
    except (MissingInput, release.ReleaseError):
        raise
    except Exception as exc:  # the registry cannot be read: the rules score, flagged
        reason = f"registry unreachable ({type(exc).__name__}: {str(exc)[:200]})"
        log.error("score.fallback", reason=reason)
        plan = fallback_plan(settings, reason)
        return ScoringModel(None, plan.portable(), plan.versions(), reason, {})
    if view.champion is None and not view.state.frozen:
        registry.resolve_alias(settings, alias)  # raises MissingInput: train and promote one
    ref = None
    if view.champion is not None:
        try:
            ref = registry.get_version(settings, view.champion)
        except MissingInput:
            ref = None
    log.info("score.model_resolved", model=view.model_name, version=view.champion, alias=alias,
             release=view.state.describe())
    if hooks and hooks.after_model_resolved and ref is not None:
        hooks.after_model_resolved(ref)
    if ref is not None and not view.state.frozen:
        # A champion that reads other features is a deployment error: refused, not served by
        # the rules (a champion that cannot be loaded at all is: build_plan falls back).
        try:
            booster = registry.load_booster(settings, ref)  # cached by version: loaded once
        except Exception:
            booster = None
        if booster is not None:
            _check_features(booster, ref)
    # By version: a moved alias changes nothing. Every declared feature set is served here.
    plan = build_plan(settings, view, served=tuple(FEATURE_SETS.values()))
    if plan.serves_fallback:
        log.warning("score.fallback", reason=plan.fallback_reason)
    return ScoringModel(ref, plan.portable(), plan.versions(), plan.fallback_reason if plan.serves_fallback else None,
                        dict(plan.errors))


def _check_features(booster: Any, ref: ModelRef | None) -> None:
    from cardscore.model.scoring import IncompatibleModel, check_model_features

    if ref is None:
        return
    try:
        check_model_features(booster.feature_names or ref.feature_names, f"{ref.name} v{ref.version}",
                             tuple(FEATURE_SETS.values()))
    except IncompatibleModel as exc:
        raise StageFailed(STAGE, str(exc)) from None


# ------------------------------------------------------------------------------ a day


def score_day(
    ctx: JobContext,
    day: date,
    *,
    model: ScoringModel | None = None,
    run_id: str | None = None,
    hooks: ScoreHooks | None = None,
    progress: Progress | None = None,
) -> ScoreReport:
    """Score, gate and publish the transactions of `day` (the nightly entry point).

    Raises `MissingInput` (no silver day, no feature snapshot, no model under the alias),
    `PredictionsGateFailed` (nothing published) or `StageFailed` (incompatible model).
    """
    from pyspark.sql import functions as F

    from cardscore.expectations.gate import validate
    from cardscore.jobs.score_batch.transforms import (
        prediction_records,
        score_release_in_engine,
        served_features,
    )

    started = time.perf_counter()
    phase = PhaseTimer(progress)

    settings, lake = ctx.settings, ctx.lake
    cfg = settings.scoring
    run_id = run_id or new_run_id()
    phase("inputs")
    model = model or resolve_model(ctx, hooks)
    transactions, silver_rows, inputs = _silver_day(ctx, day)
    customer_rows, terminal_rows = _snapshot_rows(ctx, day, inputs)
    fresh_rows = _fresh_rows(ctx, day, transactions, inputs) if model.uses_fresh else None

    phase("score")
    features = served_features(transactions, customer_rows, terminal_rows, fresh_rows)
    scored = score_release_in_engine(features, model.plan, cfg.predict_threads)
    predictions = prediction_records(scored, model.name, model.version, day, run_id, datetime.now(UTC))
    if hooks and hooks.before_stage:
        predictions = hooks.before_stage(predictions)
    staging = _staging_uri(ctx, run_id, day)
    gate_failed = False
    try:
        predictions.write.mode("overwrite").parquet(staging)
        staged = ctx.spark.read.parquet(staging)

        phase("gate")
        parameters = gate_parameters(settings, day, silver_rows, model.served_versions())
        run_name = f"{run_id}-{day.isoformat()}"
        result = validate(staged, SUITE, settings, run_name, parameters, build_docs=False)
        if not result.success:
            gate_failed = True
            # Rebuild the Data Docs only when someone has to look at them.
            result = validate(staged, SUITE, settings, run_name, parameters, build_docs=True)
            log.error("score.gate_failed", day=day.isoformat(), run_id=run_id, staging=staging,
                      failed=[f.describe() for f in result.failed])
            raise PredictionsGateFailed(result, staging)

        phase("publish")
        # mergeSchema: a predictions table written before prediction_record v2 gains its
        # nullable release columns (older days read them as null).
        version = lake.replace_where(
            staged, cfg.output_table, f"{PARTITION} = '{day.isoformat()}'", partition_by=[PARTITION],
            merge_schema=True,
        )
        totals = staged.agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.col("unknown_customer").cast("long")).alias("unknown_customers"),
            F.sum(F.col("unknown_terminal").cast("long")).alias("unknown_terminals"),
            F.sum((F.col("unknown_customer") & F.col("unknown_terminal")).cast("long")).alias("defaults_only"),
            F.avg("score").alias("mean_score"),
        ).collect()[0]
        arms = {str(r["arm"]): int(r["count"]) for r in staged.groupBy("arm").count().collect()}
    finally:
        if not gate_failed:  # a failed gate keeps its rows for inspection
            discard_staging(staging, STAGE)
    report = ScoreReport(
        day=day,
        run_id=run_id,
        model_name=model.name,
        model_version=model.version,
        rows=int(totals["rows"]),
        silver_rows=silver_rows,
        unknown_customers=int(totals["unknown_customers"] or 0),
        unknown_terminals=int(totals["unknown_terminals"] or 0),
        defaults_only=int(totals["defaults_only"] or 0),
        mean_score=None if totals["mean_score"] is None else float(totals["mean_score"]),
        output_table=cfg.output_table,
        inputs=inputs,
        output_version=version,
        gate=result.summary(),
        seconds=round(time.perf_counter() - started, 3),
        phase_seconds=phase.finish(),
        arms=arms,
        release={"versions": model.versions, "fallback_reason": model.fallback_reason, "errors": model.errors},
    )
    log.info("score.published", **{k: v for k, v in report.to_dict().items() if k != "gate"})
    return report


def score_days(
    ctx: JobContext,
    days: Sequence[date],
    *,
    hooks: ScoreHooks | None = None,
    progress: Progress | None = None,
    on_day: Callable[[ScoreReport], None] | None = None,
) -> list[ScoreReport]:
    """Score each day in order with ONE model version resolved before the first day; stops at
    the first failing day (the days before it stay published)."""
    model = resolve_model(ctx, hooks)
    run_id = new_run_id()
    reports = []
    for day in days:
        report = score_day(ctx, day, model=model, run_id=run_id, hooks=hooks, progress=progress)
        reports.append(report)
        if on_day:
            on_day(report)
    return reports


# ------------------------------------------------------------------------------ helpers


def new_run_id() -> str:
    return f"score-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def gate_parameters(settings: Any, day: date, silver_rows: int, model_versions: str | Sequence[str]) -> dict[str, Any]:
    """The run-time values of the predictions suite's `$PARAMETER`s (`model_versions`: every
    version the run may serve: the champion, the canary, or the fallback rules' version)."""
    return {
        "expected_rows": silver_rows,
        "model_versions": [model_versions] if isinstance(model_versions, str) else list(model_versions),
        "day_start": f"{day.isoformat()}T00:00:00",
        "day_end": f"{day.isoformat()}T23:59:59.999999",
        "max_mean_score": settings.scoring.gate.max_mean_score,
    }


def _silver_day(ctx: JobContext, day: date) -> tuple[DataFrame, int, dict[str, int | None]]:
    """The day's silver transactions at one pinned table version, and their count."""
    from pyspark.sql import functions as F

    lake = ctx.lake
    table = catalog.SILVER_TRANSACTIONS
    if not lake.exists(table):
        raise MissingInput(STAGE, f"{table} does not exist at {lake.uri(table)}; run ingest first")
    version = lake.version(table)
    # Pinned: the count the gate expects and the rows scored come from the same version.
    transactions = lake.read(table, version=version).where(F.col(PARTITION) == F.lit(day))
    rows = transactions.count()
    if rows == 0:
        raise MissingInput(
            STAGE,
            f"{table} has no transactions on {day}; run `cardscore run ingest --date {day}` first",
        )
    return transactions, rows, {table: version}


def _snapshot_rows(
    ctx: JobContext, day: date, inputs: dict[str, int | None]
) -> tuple[DataFrame, DataFrame]:
    """Day `day`'s rows of the customer and terminal snapshots, at pinned table versions."""
    from pyspark.sql import functions as F

    lake = ctx.lake
    rows = []
    for table in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES):
        if not lake.exists(table):
            raise MissingInput(
                STAGE, f"{table} does not exist at {lake.uri(table)}; run `cardscore run features` first"
            )
        inputs[table] = version = lake.version(table)
        rows.append(lake.read(table, version=version).where(F.col(SNAPSHOT_DATE) == F.lit(day)))
    customer_rows, terminal_rows = rows
    if ctx.settings.scoring.require_snapshot and customer_rows.select(CUSTOMER_KEY).union(
        terminal_rows.select(F.col(TERMINAL_KEY).alias(CUSTOMER_KEY))
    ).isEmpty():
        raise MissingInput(
            STAGE,
            f"no feature snapshot for {day} in {catalog.CUSTOMER_FEATURES} or "
            f"{catalog.TERMINAL_FEATURES}; run `cardscore run features --date {day}` first (or set "
            "scoring.require_snapshot: false to score every entity as unknown)",
        )
    return customer_rows, terminal_rows


def _fresh_rows(ctx: JobContext, day: date, transactions: DataFrame, inputs: dict[str, int | None]) -> DataFrame:
    """Day `day`'s rows of gold.fresh_features at a pinned version; `MissingInput` unless every
    transaction scored has one (a model must never see a fresh feature that was not computed)."""
    from cardscore.features.fresh_serving import fresh_rows, require_fresh_rows

    version = ctx.lake.version(catalog.FRESH_FEATURES)
    rows = fresh_rows(ctx.lake, day, day, version, STAGE)
    require_fresh_rows(transactions, rows, day, day, STAGE)
    inputs[catalog.FRESH_FEATURES] = version
    return rows


def _staging_uri(ctx: JobContext, run_id: str, day: date) -> str:
    base = ctx.settings.scoring.staging or join_uri(ctx.settings.lake_root, "_staging")
    return join_uri(base, "predictions", run_id, day.isoformat())


# ------------------------------------------------------------------------------ the stage


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--if-no-model", choices=("fail", "skip"), default="fail",
        help="no version under the alias yet: fail (exit 1), or report the stage as skipped "
        "(the nightly does: a pipeline without a champion still ingests and builds features)",
    )
    parser.add_argument("--plot", metavar="PNG",
                        help="also draw the scored days' score distribution and unknown-entity shares")


def run(call: StageCall) -> StageOutcome:
    """The stage: score the call's day with the model resolved once for the whole run."""
    from cardscore.core import registry
    from cardscore.core.stage import SKIPPED

    ctx, state = call.ctx, call.run_state
    if "model" not in state:
        alias = ctx.settings.scoring.model_alias
        if call.options.get("if_no_model") == "skip" and registry.find_alias(ctx.settings, alias) is None:
            message = (
                f"no {alias!r} version of {ctx.settings.mlflow.model_name!r} yet; train and promote "
                "one (`cardscore train`, `cardscore promote`) to score"
            )
            log.warning("score.skipped", day=call.day.isoformat(), reason=message)
            return StageOutcome(status=SKIPPED, message=message, details={"reason": "no_model"})
        state["model"], state["run_id"] = resolve_model(ctx), new_run_id()
    report = score_day(ctx, call.day, model=state["model"], run_id=state["run_id"], progress=call.progress)
    return report.outcome()


def after_run(ctx: JobContext, outcomes: Sequence[StageOutcome], options: Mapping[str, Any]) -> None:
    if options.get("plot"):
        from cardscore.jobs.score_batch.report import plot_scored_days

        plot_scored_days(ctx, [o.report for o in outcomes if o.report is not None], Path(options["plot"]))


SPEC = StageSpec(
    name=STAGE,
    description="batch predictions of the day by the champion, gated",
    run=run,
    inputs=(Input(catalog.SILVER_TRANSACTIONS, PARTITION, 0, 0), Input(catalog.CUSTOMER_FEATURES, SNAPSHOT_DATE, 0, 0),
            Input(catalog.TERMINAL_FEATURES, SNAPSHOT_DATE, 0, 0), Input(catalog.FRESH_FEATURES, PARTITION, 0, 0)),
    outputs=("gold.predictions",),
    gates=(SUITE,),
    add_options=add_options,
    summarize=summary_table,
    after_run=after_run,
)
