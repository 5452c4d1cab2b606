"""Materialize feature snapshots into the online store (SQLite or Redis, from settings).

    spark-submit jobs/materialize.py --date 2018-05-01
    python jobs/materialize.py --from 2018-04-01 --to 2018-05-01 --remote sc://127.0.0.1:15002

The stream scorer serves a transaction of day D only from day D's snapshot
(features/online.py), so run this for D before D's transactions arrive. A range loads each
entity's latest row of the range.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta

from cardscore.jobrunner import EXIT_USAGE, JobContext, days_from_args, job_parser, run_job


def _stage(ctx: JobContext, args: argparse.Namespace) -> None:
    from features.store import materialize

    days = [d + timedelta(days=args.shift_days) for d in days_from_args(args)]  # --shift-days 1 (the bundle)
    report = materialize(ctx.settings, ctx.spark, days[0], days[-1])
    print(
        f"online store ({report.online_store}) serves {report.last}: {report.customer_rows} "
        f"customers, {report.terminal_rows} terminals"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    try:
        days_from_args(args)
    except ValueError as exc:
        print(f"usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_job("materialize", _stage, argv, dated=False, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
