"""Materialize a day's feature snapshot into the online store (SQLite or Redis, from settings).

    spark-submit jobs/materialize/main.py --date 2018-05-01
    cardscore materialize --date 2018-05-01          # the same (also `cardscore run materialize`)

The stream scorer serves a transaction of day D only from day D's snapshot
(features/online.py), so run this for D before D's transactions arrive: the night of D-1 does
it with `--shift-days 1`. A range is loaded in one pass: each entity ends with its latest row
of the range.
"""

from __future__ import annotations

from cardscore.core import catalog
from cardscore.core.stage import Input, StageCall, StageOutcome, StageSpec

STAGE = "materialize"


def run(call: StageCall) -> list[StageOutcome]:
    from cardscore.features.store import materialize

    ctx, days = call.ctx, call.days
    report = materialize(ctx.settings, ctx.spark, days[0], days[-1])
    inputs = {table: ctx.lake.version(table) for table in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES)}
    outcome = StageOutcome(
        inputs=inputs,
        details=report.to_dict(),
        message=f"{report.online_store} serves {report.last}: {report.customer_rows} customers, "
        f"{report.terminal_rows} terminals",
        report=report,
    )
    return [outcome] * len(days)


SPEC = StageSpec(
    name=STAGE,
    description="the day's feature snapshot into the online store",
    run=run,
    one_pass=True,
    inputs=(Input(catalog.CUSTOMER_FEATURES, "snapshot_date", 0, 0), Input(catalog.TERMINAL_FEATURES, "snapshot_date", 0, 0)),
    outputs=("online store",),
)
