"""Gates that see the day: an empty or missing day file, the share of lines quarantined per
reason, the accepted rows against the recent days, and landing days outside the window around
the pipeline's clock. The gate message leads with the cause; GX stays the runner of record."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest
from pyspark.sql import functions as F

from cardscore.core import catalog
from cardscore.core.config import Settings, load_settings
from cardscore.core.stage import job_context
from cardscore.jobs.ingest.report import FeedReport
from cardscore.jobs.ingest.stage import (
    DayRefused,
    IngestGateFailed,
    day_window,
    gate_cause,
    ingest_day,
    landing_profile,
    landing_violated,
    refused_day,
    volume_bounds,
)
from cardscore.jobs.ingest.transforms import LABELS, TRANSACTIONS
from cardscore.simulator import read_landing_day
from tests.ingest.test_ingest import (
    DAY1,
    DAY2,
    DAY3,
    REPO,
    folder,
    tx_at,
    world,  # noqa: F401  (the tiny simulated world, a fixture)
    write_lines,
)

# ------------------------------------------------------------------ the pieces, no engine


def test_the_cause_names_what_broke_the_day(settings: Settings) -> None:
    encoding = FeedReport("transactions", files=1, lines=9_669, accepted=1, quarantined=9_668, reasons={"encoding": 9_668})
    assert gate_cause(TRANSACTIONS, DAY1, encoding, settings) == "transactions 2018-04-01: 9,668 of 9,669 lines rejected: encoding"
    mixed = FeedReport("transactions", files=1, lines=100, accepted=14, quarantined=86,
                       reasons={"wrong_type": 6, "duplicate_conflict": 80})
    assert gate_cause(TRANSACTIONS, DAY1, mixed, settings).endswith("86 of 100 lines rejected: duplicate_conflict 80, wrong_type 6")
    missing = FeedReport("transactions")
    assert "no transactions file landed" in gate_cause(TRANSACTIONS, DAY1, missing, settings)
    empty = FeedReport("transactions", files=1)
    assert "the day's transactions files hold 0 lines" in gate_cause(TRANSACTIONS, DAY1, empty, settings)
    withdrawn = FeedReport("transactions", files=1, lines=5, files_withdrawn=1, withdrawn=5)
    assert "every transactions file of the day is superseded or retracted" in gate_cause(TRANSACTIONS, DAY1, withdrawn, settings)
    low = FeedReport("transactions", files=1, lines=1_000, accepted=1_000, recent_median=9_700.0)
    assert gate_cause(TRANSACTIONS, DAY1, low, settings) == (
        "transactions 2018-04-01: 1,000 lines accepted, 10% of the median of the last 7 days (9,700; allowed 4,850 .. 19,400)")
    ok = FeedReport("labels", files=1, lines=3, accepted=3)
    assert "break the silver_labels expectations" in gate_cause(LABELS, DAY1, ok, settings)


def test_the_landing_profile_and_volume_bounds(settings: Settings) -> None:
    custom = load_settings(overrides={"home": settings.home, "ingest": {"gate": {
        "max_quarantine_rate_by_reason": {"duplicate_conflict": 0.01}}}})
    report = FeedReport("transactions", files=1, lines=200, accepted=180, duplicates=4, quarantined=16,
                        reasons={"duplicate_conflict": 6, "wrong_type": 10})
    labels = FeedReport("labels", files=1, lines=3, accepted=3)
    both = landing_profile([report, labels], custom)
    assert list(both.columns) == ["feed", "outcome", "lines", "day_lines", "min_day_lines", "rate", "max_rate"]
    profile = both[both["feed"] == "transactions"].set_index("outcome")
    assert list(profile.index) == ["accepted", "duplicate", "superseded", "quarantined", "duplicate_conflict", "wrong_type"]
    assert profile.loc["wrong_type", "rate"] == 0.05 and profile.loc["wrong_type", "max_rate"] == 0.05
    assert profile.loc["duplicate_conflict", "max_rate"] == 0.01
    assert profile.loc["quarantined", "max_rate"] == 0.10 and set(profile["day_lines"]) == {200}
    assert set(profile["min_day_lines"]) == {1} and set(both[both["feed"] == "labels"]["min_day_lines"]) == {0}
    assert landing_violated(report, custom) and not landing_violated(labels, custom)  # 3% conflicts > 1%
    assert landing_violated(FeedReport("transactions", files=1), custom)  # an empty day
    assert volume_bounds(None, settings.ingest.gate.volume) == (0, None)
    assert volume_bounds(101.0, settings.ingest.gate.volume) == (50, 202)


def test_the_day_window_follows_the_pipeline_clock(settings: Settings) -> None:
    clocked = load_settings(environ={"CARDSCORE__HOME": settings.home, "CARDSCORE__PIPELINE__CLOCK": "2018-04-01T12:00:00"})
    assert clocked.pipeline.now() == datetime(2018, 4, 1, 12, tzinfo=UTC)  # a clock without zone is UTC
    assert day_window(clocked) == (None, date(2018, 4, 2))
    assert refused_day(clocked, date(2018, 4, 2), day_window(clocked)) is None
    message = refused_day(clocked, date(2018, 4, 5), day_window(clocked))
    assert message.startswith("landing day 2018-04-05 is 4 days after the pipeline's day 2018-04-01 (pipeline.clock)")
    behind = load_settings(overrides={"home": settings.home, "pipeline": {"clock": "2018-04-10T00:00:00Z"},
                                      "ingest": {"day_window": {"max_days_behind": 3}}})
    assert "9 days before" in refused_day(behind, DAY1, day_window(behind))
    assert day_window(settings)[1] >= datetime.now(UTC).date()  # the system clock by default


# ------------------------------------------------------------------ the stage, on the engine


def test_a_day_of_rejected_lines_fails_with_its_cause_first(spark, settings: Settings) -> None:
    job = job_context(settings, spark)
    good = tx_at(1, "2018-04-01T10:00:00Z")
    broken = [tx_at(i, "2018-04-01T10:00:00Z") + b"\r" for i in range(2, 40)]  # CRLF: encoding
    write_lines(settings, "transactions", DAY1, "t.jsonl", [good, *broken])
    with pytest.raises(IngestGateFailed) as failure:
        ingest_day(job, DAY1)
    message = str(failure.value)
    lines = message.splitlines()
    assert lines[0] == "ingest: transactions 2018-04-01: 38 of 39 lines rejected: encoding"
    assert lines[1] == "gate landing_day: 1 of 3 expectations failed"
    assert "expect_column_pair_values_a_to_be_greater_than_b" in message
    assert not job.lake.exists(catalog.SILVER_TRANSACTIONS)
    assert job.lake.read(catalog.QUARANTINE).count() == 38


def test_an_empty_or_missing_day_file_fails_in_ingest(spark, settings: Settings) -> None:
    job = job_context(settings, spark)
    (folder(settings, "transactions", DAY1) / "t.jsonl").write_bytes(b"")
    with pytest.raises(IngestGateFailed, match=r"^ingest: transactions 2018-04-01: the day's transactions files hold 0 lines"):
        ingest_day(job, DAY1)
    write_lines(settings, "labels", DAY2, "l.jsonl", [])  # labels arrived, transactions did not
    with pytest.raises(IngestGateFailed, match=r"^ingest: transactions 2018-04-02: no transactions file landed") as failure:
        ingest_day(job, DAY2)
    assert 'expect_column_pair_values_a_to_be_greater_than_b {"column_A": "day_lines"' in str(failure.value)


def test_a_day_far_below_the_recent_median_fails(spark, tmp_path, world) -> None:  # noqa: F811
    from cardscore.simulator import write_landing

    settings = load_settings(overrides={"home": str(tmp_path / "home"), "ingest": {"gate": {"volume": {"min_days": 2}}}})
    write_landing(world, settings.landing_root)
    job = job_context(settings, spark)
    ingest_day(job, DAY1)
    ingest_day(job, DAY2)
    path = folder(settings, "transactions", DAY3) / f"transactions-{DAY3.isoformat()}.jsonl"
    path.write_bytes(b"".join(x + b"\n" for x in read_landing_day(settings.landing_root, DAY3)[:5]))  # a cut file
    with pytest.raises(IngestGateFailed) as failure:
        ingest_day(job, DAY3)
    first = str(failure.value).splitlines()[0]
    assert first.startswith("ingest: transactions 2018-04-03: 5 lines accepted, ") and "of the median of the last 7 days" in first
    assert "expect_table_row_count_to_be_between" in str(failure.value)
    assert job.lake.read(catalog.SILVER_TRANSACTIONS).where(F.col("tx_date") == F.lit(DAY3)).count() == 0


def test_a_landing_day_ahead_of_the_clock_is_refused_and_quarantined(spark, settings: Settings) -> None:
    from cardscore.core.engine import embedded_url

    future = date(2018, 4, 5)
    write_lines(settings, "transactions", future, "t.jsonl", [tx_at(1, "2018-04-05T10:00:00Z"), b"oops"])
    write_lines(settings, "transactions", DAY1, "t.jsonl", [tx_at(2, "2018-04-01T10:00:00Z"), tx_at(3, "2018-04-05T10:00:00Z")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE")}
    env.update({"CARDSCORE__HOME": settings.home, "CARDSCORE__PIPELINE__CLOCK": "2018-04-01T12:00:00Z"})
    proc = subprocess.run(
        [sys.executable, "jobs/ingest/main.py", "--date", future.isoformat(), "--remote", embedded_url()],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "landing day 2018-04-05 is 4 days after the pipeline's day 2018-04-01 (pipeline.clock)" in proc.stderr
    job = job_context(settings, spark)
    assert not job.lake.exists(catalog.SILVER_TRANSACTIONS)  # never published
    quarantined = {r.line_number: r.reason for r in job.lake.read(catalog.QUARANTINE).collect()}
    assert quarantined == {1: "outside_window", 2: "malformed_json"}
    assert job.lake.read(catalog.BRONZE_TRANSACTIONS).count() == 2

    clocked = job_context(load_settings(overrides={"home": settings.home, "pipeline": {"clock": "2018-04-01T12:00:00Z"},
                                                   "ingest": {"gate": {"max_rejected_rate": 1.0, "max_quarantine_rate": 1.0}}}), spark)
    with pytest.raises(DayRefused):
        ingest_day(clocked, future)
    report = ingest_day(clocked, DAY1).feeds["transactions"]  # today is fine; a record from the future is not
    assert report.reasons == {"outside_window": 1} and report.accepted == 1
