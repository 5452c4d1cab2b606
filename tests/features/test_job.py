"""jobs/build_features/main.py and jobs/materialize/main.py: idempotent days, ranges equal to single days,
gated publication, clear errors on missing input; run as spark-submit and through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from cardscore.core import catalog
from cardscore.core.config import load_settings
from cardscore.core.errors import MissingInput
from cardscore.core.stage import JobContext, job_context
from cardscore.expectations.gate import GateFailed
from cardscore.jobs.build_features.stage import build_features_day, build_features_range
from tests.features.worlds import small_world, write_silver

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COLUMNS = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]


def context(spark, home: Path, **features) -> JobContext:
    settings = load_settings(overrides={"home": str(home), "features": features})
    return job_context(settings, spark)


def gold(ctx: JobContext, table: str) -> pd.DataFrame:
    key = "customer_id" if table == catalog.CUSTOMER_FEATURES else "terminal_id"
    rows = ctx.lake.read(table).toPandas().drop(columns=["created_at"])
    return rows.sort_values(["snapshot_date", key]).reset_index(drop=True)


@pytest.fixture(scope="module")
def world():
    return small_world(seed=4, n_days=40, late_labels=True)


def test_days_are_idempotent_and_a_range_equals_single_days(spark, tmp_path: Path, world) -> None:
    ctx = context(spark, tmp_path / "home", backfill_chunk_days=4)
    write_silver(ctx.lake, world.transactions[COLUMNS], world.labels)
    reports = build_features_range(ctx, date(2018, 5, 1), date(2018, 5, 6))  # two passes: 4 + 2 days
    assert [r.day for r in reports] == [date(2018, 5, d) for d in range(1, 7)]
    assert [r.pass_days for r in reports] == [4, 4, 4, 4, 2, 2]
    first_customers = gold(ctx, catalog.CUSTOMER_FEATURES)
    first_terminals = gold(ctx, catalog.TERMINAL_FEATURES)
    per_day = first_customers.groupby("snapshot_date").size()
    assert [per_day[r.day] for r in reports] == [r.customer_rows for r in reports]
    assert all(r.terminal_rows > 0 for r in reports)
    version = ctx.lake.version(catalog.CUSTOMER_FEATURES)

    # Re-running single days (one inside each pass) replaces them with the same rows.
    again = [build_features_day(ctx, date(2018, 5, 3)), build_features_day(ctx, date(2018, 5, 6))]
    assert [r.customer_rows for r in again] == [reports[2].customer_rows, reports[5].customer_rows]
    assert ctx.lake.version(catalog.CUSTOMER_FEATURES) == version + 2
    pd.testing.assert_frame_equal(gold(ctx, catalog.CUSTOMER_FEATURES), first_customers)
    pd.testing.assert_frame_equal(gold(ctx, catalog.TERMINAL_FEATURES), first_terminals)


def test_a_failed_gate_publishes_nothing(spark, tmp_path: Path, world) -> None:
    ctx = context(spark, tmp_path / "home")
    tx = world.transactions[COLUMNS].copy()
    # A negative amount that slipped past ingest: the customer means of the next days go wrong.
    tx.loc[tx["event_time"].dt.date == date(2018, 4, 28), "amount"] = -1000.0
    write_silver(ctx.lake, tx, world.labels)
    build_features_day(ctx, date(2018, 4, 28))  # before the bad day: fine
    version = ctx.lake.version(catalog.CUSTOMER_FEATURES)
    with pytest.raises(GateFailed) as failure:
        build_features_day(ctx, date(2018, 4, 29))
    assert "expect_column_values_to_be_between(customer_id_avg_amount_1day_window)" in str(failure.value)
    assert failure.value.exit_code == 1
    assert ctx.lake.version(catalog.CUSTOMER_FEATURES) == version
    published = ctx.lake.read(catalog.CUSTOMER_FEATURES).select("snapshot_date").distinct().collect()
    assert [row["snapshot_date"] for row in published] == [date(2018, 4, 28)]


def test_the_first_day_publishes_an_empty_snapshot(spark, tmp_path: Path, world) -> None:
    from cardscore.features.transform import CUSTOMER_COLUMNS

    ctx = context(spark, tmp_path / "home")
    write_silver(ctx.lake, world.transactions[COLUMNS], world.labels)
    report = build_features_day(ctx, date(2018, 4, 1))  # nothing happened before the first day
    assert (report.customer_rows, report.terminal_rows) == (0, 0)
    customers = ctx.lake.read(catalog.CUSTOMER_FEATURES)
    assert customers.count() == 0
    assert customers.columns == [*CUSTOMER_COLUMNS[:-1], "created_at", "snapshot_date"]
    assert build_features_day(ctx, date(2018, 4, 2)).customer_rows > 0


def test_missing_inputs_are_clear_errors(spark, tmp_path: Path, world) -> None:
    ctx = context(spark, tmp_path / "home")
    with pytest.raises(MissingInput, match=r"silver\.transactions does not exist"):
        build_features_day(ctx, date(2018, 5, 1))

    tx = world.transactions[COLUMNS]
    gap = tx[tx["event_time"].dt.date != date(2018, 4, 20)]
    write_silver(ctx.lake, gap, world.labels)
    with pytest.raises(MissingInput, match="no transactions on 2018-04-20"):
        build_features_day(ctx, date(2018, 5, 1))
    with pytest.raises(MissingInput, match="on 2018-04-20, 2018-05-11, 2018-05-12"):  # and past the end
        build_features_day(ctx, date(2018, 5, 20))

    lenient = context(spark, tmp_path / "home", require_previous_day=False, require_labels=False)
    write_silver(lenient.lake, tx, world.labels)
    shutil.rmtree(lenient.settings.home_path / "lake" / "silver" / "labels")
    with pytest.raises(MissingInput, match=r"silver\.labels does not exist"):
        build_features_day(ctx, date(2018, 5, 1))
    report = build_features_day(lenient, date(2018, 5, 1))  # no labels: every risk is 0
    risks = lenient.lake.read(catalog.TERMINAL_FEATURES).toPandas()["terminal_id_risk_30day_window"]
    assert report.terminal_rows == len(risks) > 0 and (risks == 0).all()


def _env(home: Path, remote: str) -> dict[str, str]:
    dropped = ("SPARK_REMOTE", "PYSPARK_GATEWAY_PORT", "SPARK_CONNECT_MODE_ENABLED")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "CARDSCORE__HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_REMOTE": remote,
    })
    return env


def test_usage_errors_exit_2() -> None:
    from cardscore.core.runner import main
    from cardscore.jobs.build_features.stage import SPEC as FEATURES
    from cardscore.jobs.materialize.stage import SPEC as MATERIALIZE

    assert main(FEATURES, ["--date", "2018-05-01", "--from", "2018-05-01"]) == 2
    assert main(MATERIALIZE, ["--from", "2018-05-02", "--to", "2018-05-01"]) == 2


def test_spark_submit_and_cli(spark, tmp_path: Path, world) -> None:
    """spark-submit of the job against the session's engine (SPARK_REMOTE), then the CLI.

    (In-process CLI runs would stop the session's engine: each CLI command stops its own.)
    """
    from cardscore.core.engine import embedded_url

    home = tmp_path / "home"
    ctx = context(spark, home)
    write_silver(ctx.lake, world.transactions[COLUMNS], world.labels)
    env = _env(home, embedded_url())

    built = subprocess.run([str(BIN / "spark-submit"), "jobs/build_features/main.py", "--date", "2018-05-01"],
                           env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "2018-05-01:" in built.stdout
    dates = {r["snapshot_date"] for r in ctx.lake.read(catalog.CUSTOMER_FEATURES).select("snapshot_date").collect()}
    assert dates == {date(2018, 5, 1)}

    cli = subprocess.run([str(BIN / "cardscore"), "run", "features", "--from", "2018-05-02", "--to", "2018-05-03",
                          "--json"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert [r["day"] for r in json.loads(cli.stdout)] == ["2018-05-02", "2018-05-03"]

    applied = subprocess.run([str(BIN / "cardscore"), "features", "apply"], env=env, capture_output=True,
                             text=True, timeout=300, cwd=REPO)
    assert applied.returncode == 0, applied.stderr[-3000:]
    for name in ("customer_id", "terminal_id", "customer_features", "fraud_baseline_v1"):
        assert name in applied.stdout + applied.stderr, name
