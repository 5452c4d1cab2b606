"""The common shell of every `jobs/*.py` entry point (spark-submit or `python jobs/x.py`).

It parses the shared options (--date or --from/--to, --config, --remote), loads settings,
opens the engine session, runs the stage once per day, maps failures to exit codes
(0 ok, 1 stage failed, 2 usage/config/engine error) and stops the session it opened.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from cardscore.core.config import ConfigError, Settings, load_settings
from cardscore.core.errors import StageFailed
from cardscore.core.logs import configure_logging, get_logger

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cardscore.core.lake import Lake

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class JobContext:
    settings: Settings
    spark: SparkSession
    lake: Lake


def job_parser(description: str, dated: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    if dated:
        parser.add_argument("--date", help="the day to process: YYYY-MM-DD, today or yesterday (UTC)")
        parser.add_argument("--from", dest="start", help="first day of a range (backfill)")
        parser.add_argument("--to", dest="end", help="last day of a range, inclusive")
        parser.add_argument(
            "--shift-days",
            type=int,
            default=0,
            help="process each given day shifted by N days (for schedulers: the nightly run for "
            "day D builds the next day's feature snapshot with --date D --shift-days 1)",
        )
    parser.add_argument("--config", help="YAML settings file (default: $CARDSCORE_CONFIG, ./cardscore.yaml)")
    parser.add_argument(
        "--remote",
        help="Spark Connect URL sc://host:port (spark-submit's own --remote flag does not reach the app)",
    )
    return parser


def parse_day(text: str, today: date | None = None) -> date:
    """YYYY-MM-DD, or `today` / `yesterday` (UTC) for schedulers that cannot do date arithmetic."""
    today = today or datetime.now(UTC).date()
    keywords = {"today": today, "yesterday": today - timedelta(days=1)}
    if text.lower() in keywords:
        return keywords[text.lower()]
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a date like 2018-04-01, 'today' or 'yesterday', got {text!r}") from None


def days_from_args(args: argparse.Namespace) -> list[date]:
    if args.date and (args.start or args.end):
        raise ValueError("give either --date or --from/--to, not both")
    if args.date:
        return [parse_day(args.date)]
    if not (args.start and args.end):
        raise ValueError("give --date D, or both --from and --to")
    first, last = parse_day(args.start), parse_day(args.end)
    if last < first:
        raise ValueError("--to is before --from")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _shifted(days: list[date], args: argparse.Namespace) -> list[date]:
    shift = getattr(args, "shift_days", 0) or 0
    return [d + timedelta(days=shift) for d in days]


def run_job(
    name: str,
    stage: Callable[..., object],
    argv: Sequence[str] | None = None,
    description: str = "",
    dated: bool = True,
    parser: argparse.ArgumentParser | None = None,
) -> int:
    """Run `stage(ctx, day, args)` for each requested day (or `stage(ctx, args)` if undated)."""
    from cardscore.core.engine import EngineError, get_spark, stop_spark
    from cardscore.core.lake import Lake

    parser = parser or job_parser(description or f"cardscore {name} job", dated)
    args = parser.parse_args(argv)
    log = get_logger(f"jobs.{name}")
    try:
        days = _shifted(days_from_args(args), args) if dated else []
        settings = load_settings(args.config)
    except (ValueError, ConfigError) as exc:
        configure_logging()
        log.error("job.usage_error", job=name, error=str(exc))
        return EXIT_USAGE
    configure_logging(settings.logging.level, settings.logging.format)
    try:
        spark = get_spark(settings, remote=args.remote)
    except EngineError as exc:
        log.error("job.engine_error", job=name, error=str(exc))
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    ctx = JobContext(settings, spark, Lake(spark, settings))
    try:
        if dated:
            for day in days:
                stage(ctx, day, args)
        else:
            stage(ctx, args)
    except StageFailed as exc:
        log.error("job.failed", job=name, stage=exc.stage, error=str(exc))
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    finally:
        stop_spark()
    log.info("job.done", job=name, days=[d.isoformat() for d in days])
    return EXIT_OK
