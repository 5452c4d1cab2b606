"""The one way to run a stage or a composition of stages.

    execute(target, ctx, days, options)      library call (notebooks, demo, bench, tests)
    main(target, argv)                       command line: spark-submit entry files and the CLI

`main` parses the shared options (`--date D` | `--from A --to B`, `--shift-days N`,
`--config`, `--remote`, `--json`) and the stage's own, loads the settings, opens the engine,
calls `execute`, prints what a person or a scheduler needs, and returns the exit code:
0 ok, 1 the stage failed (a gate, a missing input, an error), 2 usage/configuration/engine,
3 a composition published its data but monitoring raised an alert.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from cardscore.core.days import resolve_days
from cardscore.core.logs import configure_logging, get_logger
from cardscore.core.pipeline import Composition, DayResult, Reporter, StageRunner, Step
from cardscore.core.stage import (
    EXIT_ALERT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    JobContext,
    StageOutcome,
    StageSpec,
    open_context,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cardscore.core.config import Settings

Target = StageSpec | Composition
log = get_logger("cardscore.runner")


def is_dated(target: Target) -> bool:
    return any(s.spec.dated for s in target.steps) if isinstance(target, Composition) else target.dated


def build_parser(target: Target, prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of a stage or composition: shared options, then its own."""
    # No abbreviations: a scheduler's typo (--dat) must fail, not silently mean --date.
    parser = argparse.ArgumentParser(prog=prog, description=target.description, allow_abbrev=False)
    if is_dated(target):
        parser.add_argument("--date", help="the day to process: YYYY-MM-DD, today or yesterday (UTC)")
        parser.add_argument("--from", dest="start", help="first day of a range (backfill)")
        parser.add_argument("--to", dest="end", help="last day of a range, inclusive")
        parser.add_argument(
            "--shift-days", type=int, default=0,
            help="process each given day shifted by N days (for schedulers: the night of day D "
            "builds the next day's snapshot with --date D --shift-days 1)",
        )
    parser.add_argument("--config", help="YAML settings file (default: $CARDSCORE_CONFIG, ./cardscore.yaml)")
    parser.add_argument(
        "--remote",
        help="Spark Connect URL sc://host:port (spark-submit's own --remote flag does not reach the app)",
    )
    parser.add_argument("--json", dest="as_json", action="store_true",
                        help="print the reports (one per day) as a JSON list on stdout")
    if isinstance(target, Composition):
        names = [s.name for s in target.steps]
        parser.add_argument("--force", action="store_true",
                            help="re-run every stage, even those the ledger records as done")
        parser.add_argument("--from-stage", choices=names,
                            help="start at this stage (earlier stages are taken as done)")
    elif target.add_options:
        target.add_options(parser)
    return parser


SHARED_OPTIONS = frozenset({"date", "start", "end", "shift_days", "config", "remote", "as_json",
                            "force", "from_stage"})


def stage_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in SHARED_OPTIONS}


def execute(
    target: Target,
    ctx: JobContext,
    days: Sequence[date] = (),
    options: Mapping[str, Any] | None = None,
    *,
    reporter: Reporter | None = None,
    force: bool = False,
    from_stage: str | None = None,
) -> list[DayResult]:
    """Run a stage (for each day, or once over the range when it computes ranges in one pass)
    or a composition (each day in order). Stops after the first failed day."""
    if isinstance(target, Composition):
        # A runner per day: each night resolves its own inputs (a model promoted during a
        # backfill scores the days after it), as separate scheduled nights would.
        def night(day: date) -> DayResult:
            runner = StageRunner(ctx, target.steps, target.name, reporter=reporter)
            return runner.run_day(day, force=force, from_stage=from_stage)

        return _each_day(night, days)
    step = Step(target, options=dict(options or {}))
    # A single stage: the scheduler or the person retries; the ledger still records it.
    runner = StageRunner(ctx, [step], "run", reporter=reporter, retries=False)
    if not target.dated:
        results = [runner.run_day(None, force=True)]
    elif not days:
        raise ValueError(f"stage {target.name} needs days (--date, or --from/--to)")
    elif target.one_pass and len(days) > 1:
        results = [runner.run_range(step, list(days))]
    else:
        results = _each_day(lambda day: runner.run_day(day, force=True), days)
    outcomes = outcomes_of(results)
    if target.after_run is not None and outcomes and not any(r.failed for r in results):
        target.after_run(ctx, outcomes, step.call_options())
    return results


def _each_day(run: Any, days: Sequence[date]) -> list[DayResult]:
    results: list[DayResult] = []
    for day in days:
        results.append(run(day))
        if results[-1].failed:
            break
    return results


def exit_code(target: Target, results: Sequence[DayResult]) -> int:
    failed = next((r for r in results if r.failed), None)
    if failed is not None:
        return failed.exit_code
    if any(r.alerts for r in results):
        return EXIT_ALERT if isinstance(target, Composition) else EXIT_FAILED
    return EXIT_OK


def outcomes_of(results: Sequence[DayResult]) -> list[StageOutcome]:
    return [r.outcome for result in results for r in result.records if r.outcome is not None]


def main(
    target: Target,
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    *,
    settings: Settings | None = None,
    spark: SparkSession | None = None,
) -> int:
    """Parse `argv`, run the target, print, return the exit code (never raises for a stage)."""
    from cardscore.core import console
    from cardscore.core.config import ConfigError, load_settings
    from cardscore.core.engine import EngineError

    args = build_parser(target, prog).parse_args(argv)
    name = target.name
    try:
        days = resolve_days(args.date, args.start, args.end, args.shift_days) if is_dated(target) else []
        settings = settings or load_settings(args.config)
    except (ValueError, ConfigError) as exc:
        configure_logging()
        log.error("job.usage_error", job=name, error=str(exc))
        print(f"usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.logging.level, settings.logging.format)
    try:
        with open_context(settings, args.remote, spark) as ctx, console.reporter(target, days) as reporter:
            results = execute(target, ctx, days, stage_options(args), reporter=reporter,
                              force=getattr(args, "force", False), from_stage=getattr(args, "from_stage", None))
    except EngineError as exc:
        log.error("job.engine_error", job=name, error=str(exc))
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # e.g. an unknown --from-stage
        print(f"usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.as_json:  # the reports, for programs; failures still go to stderr
        reports = [o.report.to_dict() if hasattr(o.report, "to_dict") else o.details for o in outcomes_of(results)]
        print(json.dumps(reports, indent=2, default=str), flush=True)
    console.summary(target, results, lines=not args.as_json)
    code = exit_code(target, results)
    log.info("job.done", job=name, exit_code=code, days=[d.isoformat() for d in days])
    return code
