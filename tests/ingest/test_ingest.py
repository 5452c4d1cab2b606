"""The ingest stage end to end on a tiny world: real Sail engine, real Delta tables, real GX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import functions as F

from cardscore.core import catalog
from cardscore.core.config import Settings, load_settings
from cardscore.core.config.simulator import SimulatorSettings
from cardscore.core.errors import MissingInput, StageFailed
from cardscore.core.lake import Lake
from cardscore.core.stage import JobContext, job_context
from cardscore.jobs.ingest.landing import landing_file_uri
from cardscore.jobs.ingest.stage import IngestGateFailed, ingest_day, staging_table
from cardscore.jobs.ingest.transforms import TRANSACTIONS
from cardscore.simulator import generate_world, read_landing_day, write_landing
from tests.corpus import GOOD_LABEL, GOOD_TX, TRANSACTION_LINES, line

REPO = Path(__file__).resolve().parents[2]
DAY1, DAY2, DAY3 = date(2018, 4, 1), date(2018, 4, 2), date(2018, 4, 3)
WORLD = SimulatorSettings(n_customers=40, n_terminals=80, n_days=3, radius=25.0, seed=3)
BAD_TX = [(name, raw, reason) for name, raw, reason in TRANSACTION_LINES if reason is not None]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """These tests plant many bad lines in tiny days on purpose: the share of rejected lines is
    not what they check (tests/ingest/test_day_gates.py does), so its gate is relaxed here, and
    so is the one on a missing transactions file (some days here only have labels)."""
    gate = {"max_quarantine_rate": 1.0, "max_rejected_rate": 1.0, "min_day_lines": {"transactions": 0}}
    return load_settings(overrides={"home": str(tmp_path / "home"), "ingest": {"gate": gate}})


@pytest.fixture(scope="module")
def world():
    return generate_world(WORLD)


@pytest.fixture
def landed(settings: Settings, world) -> Settings:
    write_landing(world, settings.landing_root)
    return settings


@pytest.fixture
def job(spark, landed: Settings) -> JobContext:
    return job_context(landed, spark)


def folder(settings: Settings, feed: str, day: date) -> Path:
    path = Path(settings.landing_root.removeprefix("file://")) / feed / f"date={day.isoformat()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_lines(settings: Settings, feed: str, day: date, name: str, lines: list[bytes]) -> str:
    path = folder(settings, feed, day) / name
    path.write_bytes(b"".join(x + b"\n" for x in lines))
    return landing_file_uri(settings.landing_root, feed, day, name)


def rows(lake: Lake, table: str, where: Any = None) -> list[tuple]:
    df = lake.read(table)
    if where is not None:
        df = df.where(where)
    return sorted(tuple(r) for r in df.collect())


def tx_at(transaction_id: int, when: str, amount: float = 10.0) -> bytes:
    return line(GOOD_TX, transaction_id=transaction_id, event_time=when, amount=amount)


def test_a_day_lands_in_bronze_silver_and_quarantine(job: JobContext) -> None:
    settings, lake = job.settings, job.lake
    simulated = read_landing_day(settings.landing_root, DAY1)
    first = json.loads(simulated[0])
    extra = [raw for _, raw, _ in BAD_TX] + [
        simulated[0],  # an identical copy of a simulated line: dropped silently
        tx_at(10**9, "2018-04-01T08:00:00Z", 5.0),  # two lines, one id, different content
        tx_at(10**9, "2018-04-01T08:00:00Z", 6.0),
        tx_at(10**9 + 1, "2018-04-02T00:00:00Z"),  # belongs to the next day
        tx_at(10**9 + 2, "2018-04-01T23:59:59.999999Z"),  # valid, last microsecond of the day
    ]
    extra_uri = write_lines(settings, "transactions", DAY1, "zz-late-delivery.jsonl", extra)

    report = ingest_day(job, DAY1)

    tx = report.feeds["transactions"]
    assert (tx.files, tx.files_loaded) == (2, 2)
    assert tx.lines == len(simulated) + len(extra)
    assert tx.accepted == len(simulated) + 1
    assert tx.duplicates == 1
    assert tx.quarantined == len(BAD_TX) + 3
    expected_reasons: dict[str, int] = {}
    for _, _, reason in BAD_TX:
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    expected_reasons["duplicate_conflict"] = 2
    expected_reasons["outside_day"] = 1
    assert tx.reasons == dict(sorted(expected_reasons.items()))
    assert tx.gate is not None and tx.gate["success"]

    # bronze: every line, with its file, line number and load
    day_filter = F.col("landing_date") == F.lit(DAY1.isoformat()).cast("date")
    assert lake.read(catalog.BRONZE_TRANSACTIONS).where(day_filter).count() == tx.lines
    bronze_extra = {
        r.line_number: r for r in lake.read(catalog.BRONZE_TRANSACTIONS).where(F.col("source_file") == extra_uri).collect()
    }
    assert sorted(bronze_extra) == list(range(1, len(extra) + 1))
    assert {r.load_id for r in bronze_extra.values()} == {report.load_id}
    assert bronze_extra[len(BAD_TX) + 1].raw == simulated[0].decode()

    # quarantine: each bad line, at its line number, with its reason and raw text
    quarantined = {
        r.line_number: r for r in lake.read(catalog.QUARANTINE).where(F.col("source_file") == extra_uri).collect()
    }
    for number, (name, raw, reason) in enumerate(BAD_TX, start=1):
        row = quarantined[number]
        assert (row.source, row.reason) == ("transactions", reason), name
        assert row.detail, name
        if len(raw) > settings.ingest.quarantine_raw_max_chars:  # oversized, or thousands of digits
            assert row.raw_truncated and len(row.raw) == settings.ingest.quarantine_raw_max_chars, name
            assert raw.decode().startswith(row.raw), name
        elif reason != "encoding":
            assert not row.raw_truncated and row.raw == raw.decode(), name
    n = len(BAD_TX)
    assert quarantined[n + 2].reason == quarantined[n + 3].reason == "duplicate_conflict"
    assert quarantined[n + 4].reason == "outside_day" and "2018-04-02" in quarantined[n + 4].detail
    assert len(quarantined) == n + 3

    # silver: typed, one row per id, the day's partition
    silver = lake.read(catalog.SILVER_TRANSACTIONS)
    # Names, types and order of the contract (Delta stores columns as nullable; the gate
    # checks the contract's NOT NULLs before publishing).
    assert [(f.name, f.dataType) for f in silver.schema] == [
        (f.name, f.dataType) for f in TRANSACTIONS.silver.spark_schema()
    ]
    assert silver.count() == len(simulated) + 1
    assert silver.select("transaction_id").distinct().count() == silver.count()
    assert silver.where(F.col("tx_date") != F.lit(DAY1.isoformat()).cast("date")).count() == 0
    kept = silver.where(F.col("transaction_id") == first["transaction_id"]).collect()
    assert len(kept) == 1 and kept[0].amount == first["amount"]
    assert kept[0].source_file.endswith(f"transactions-{DAY1.isoformat()}.jsonl")  # the first copy
    last = silver.where(F.col("transaction_id") == 10**9 + 2).select(F.unix_micros("event_time")).first()[0]
    assert last == int(datetime(2018, 4, 2, tzinfo=UTC).timestamp()) * 1_000_000 - 1

    # the load ledger: one row per file, with size and hash
    loads = lake.read(catalog.INGEST_LOADS).collect()
    assert {r.source_file for r in loads} == {r.source_file for r in lake.read(catalog.BRONZE_TRANSACTIONS).select("source_file").distinct().collect()} | {
        r.source_file for r in lake.read(catalog.BRONZE_LABELS).select("source_file").distinct().collect()
    }
    assert report.versions_after[catalog.SILVER_TRANSACTIONS] == 0
    assert report.feeds["labels"].lines == len(read_landing_day(settings.landing_root, DAY1, "labels"))


def test_rerun_and_backfill_add_nothing_twice(job: JobContext) -> None:
    lake = job.lake
    first = [ingest_day(job, day) for day in (DAY1, DAY2)]
    tables = [catalog.BRONZE_TRANSACTIONS, catalog.BRONZE_LABELS, catalog.INGEST_LOADS,
              catalog.SILVER_TRANSACTIONS, catalog.SILVER_LABELS, catalog.SILVER_LABEL_REPORTS,
              catalog.QUARANTINE]
    versions = {t: lake.version(t) for t in tables}
    contents = {t: rows(lake, t) for t in tables}

    again = ingest_day(job, DAY1)  # a re-run after a later day

    assert again.versions_after == again.versions_before == versions
    assert {t: rows(lake, t) for t in tables} == contents
    assert all(f.files_loaded == 0 and f.bronze_rows_added == 0 for f in again.feeds.values())
    assert not again.quarantine_changed and not any(f.silver_changed for f in again.feeds.values())
    assert again.feeds["transactions"].accepted == first[0].feeds["transactions"].accepted

    # A backfill over already-ingested and new days loads only the new day.
    backfill = [ingest_day(job, day) for day in (DAY1, DAY2, DAY3)]
    assert [r.feeds["transactions"].files_loaded for r in backfill] == [0, 0, 1]
    silver_days = lake.read(catalog.SILVER_TRANSACTIONS).groupBy("tx_date").count().collect()
    assert sorted(r.tx_date for r in silver_days) == [DAY1, DAY2, DAY3]
    assert not lake.exists(staging_table(TRANSACTIONS, DAY3))  # staging is dropped after publish


def label(transaction_id: int, reported: str, is_fraud: bool = True, scenario: int | None = 1) -> bytes:
    return line(GOOD_LABEL, transaction_id=transaction_id, reported_time=reported, is_fraud=is_fraud, fraud_scenario=scenario)


def test_labels_latest_report_wins_across_days(spark, settings: Settings) -> None:
    job = job_context(settings, spark)
    lake = job.lake
    write_lines(settings, "labels", DAY1, "labels.jsonl", [
        label(1, "2018-04-01T09:00:00Z"),  # re-reported on day 2
        label(2, "2018-04-01T09:00:00Z", scenario=2),  # superseded the same day ...
        label(2, "2018-04-01T18:00:00Z", scenario=3),  # ... by this later report
        label(3, "2018-04-01T10:00:00Z"),  # sent twice, identically
        label(3, "2018-04-01T10:00:00Z"),
        label(4, "2018-04-01T11:00:00Z", is_fraud=True),  # two different verdicts at one time
        label(4, "2018-04-01T11:00:00Z", is_fraud=False),
        label(5, "2018-04-02T00:00:01Z"),  # arrived in the wrong folder
    ])
    write_lines(settings, "labels", DAY2, "labels.jsonl", [
        label(1, "2018-04-02T08:00:00Z", is_fraud=False, scenario=None),
        label(6, "2018-04-02T08:00:00Z"),
    ])

    day1 = ingest_day(job, DAY1).feeds["labels"]
    assert (day1.lines, day1.accepted, day1.superseded, day1.duplicates, day1.quarantined) == (8, 3, 1, 1, 3)
    assert day1.reasons == {"duplicate_conflict": 2, "outside_day": 1}
    silver = {r.transaction_id: r for r in lake.read(catalog.SILVER_LABELS).collect()}
    assert sorted(silver) == [1, 2, 3]
    assert silver[2].fraud_scenario == 3
    # silver.label_reports keeps every report: also 2's superseded earlier one (the earliest
    # report, which the fresh features count from); the copy once; 4's conflict left out.
    assert label_reports(lake) == [(1, "09:00", True, 1, DAY1), (2, "09:00", True, 2, DAY1),
                              (2, "18:00", True, 3, DAY1), (3, "10:00", True, 1, DAY1)]

    ingest_day(job, DAY2)
    version = lake.version(catalog.SILVER_LABELS)
    silver = {r.transaction_id: r for r in lake.read(catalog.SILVER_LABELS).collect()}
    assert sorted(silver) == [1, 2, 3, 6]
    assert (silver[1].is_fraud, silver[1].fraud_scenario, silver[1].reported_date) == (False, None, DAY2)
    assert lake.read(catalog.SILVER_LABELS).where(F.col("transaction_id") == 1).count() == 1

    reports_version = lake.version(catalog.SILVER_LABEL_REPORTS)
    assert label_reports(lake) == [(1, "08:00", False, None, DAY2), (1, "09:00", True, 1, DAY1),
                              (2, "09:00", True, 2, DAY1), (2, "18:00", True, 3, DAY1),
                              (3, "10:00", True, 1, DAY1), (6, "08:00", True, 1, DAY2)]

    again = ingest_day(job, DAY1)  # the older report must not come back
    assert not again.feeds["labels"].silver_changed
    assert lake.version(catalog.SILVER_LABELS) == version
    assert lake.read(catalog.SILVER_LABELS).where(F.col("transaction_id") == 1).first().is_fraud is False
    assert lake.version(catalog.SILVER_LABEL_REPORTS) == reports_version  # a re-run writes nothing


def label_reports(lake: Lake) -> list[tuple]:
    """silver.label_reports as (id, HH:MM of the report, is_fraud, scenario, reported_date)."""
    return sorted(
        (r.transaction_id, r.reported_time.astimezone(UTC).strftime("%H:%M"), r.is_fraud,
         r.fraud_scenario, r.reported_date)
        for r in lake.read(catalog.SILVER_LABEL_REPORTS).collect()
    )


def test_an_id_already_published_on_another_day_is_a_conflict(spark, settings: Settings) -> None:
    job = job_context(settings, spark)
    write_lines(settings, "transactions", DAY1, "t.jsonl", [tx_at(7, "2018-04-01T10:00:00Z"), tx_at(8, "2018-04-01T11:00:00Z")])
    write_lines(settings, "transactions", DAY2, "t.jsonl", [tx_at(7, "2018-04-02T10:00:00Z"), tx_at(9, "2018-04-02T11:00:00Z")])
    ingest_day(job, DAY1)
    report = ingest_day(job, DAY2).feeds["transactions"]
    assert (report.accepted, report.reasons) == (1, {"duplicate_conflict": 1})
    detail = job.lake.read(catalog.QUARANTINE).where(F.col("landing_date") == F.lit(DAY2.isoformat()).cast("date")).first().detail
    assert "already published for tx_date 2018-04-01" in detail
    assert ingest_day(job, DAY1).feeds["transactions"].accepted == 2  # its own day keeps it


def test_a_landing_file_that_changed_after_loading_stops_the_day(job: JobContext) -> None:
    ingest_day(job, DAY1)
    path = folder(job.settings, "transactions", DAY1) / f"transactions-{DAY1.isoformat()}.jsonl"
    path.write_bytes(path.read_bytes() + tx_at(10**9, "2018-04-01T12:00:00Z") + b"\n")
    version = job.lake.version(catalog.BRONZE_TRANSACTIONS)
    with pytest.raises(StageFailed, match="changed after load"):
        ingest_day(job, DAY1)
    assert job.lake.version(catalog.BRONZE_TRANSACTIONS) == version


def test_a_day_without_landing_folders_is_missing_input(spark, settings: Settings) -> None:
    with pytest.raises(MissingInput, match="no landing folders for 2018-05-01"):
        ingest_day(job_context(settings, spark), date(2018, 5, 1))


def test_a_failing_gate_exits_1_and_leaves_silver_unchanged(spark, job: JobContext) -> None:
    from cardscore.core.engine import embedded_url

    ingest_day(job, DAY1)
    lake = job.lake
    version = lake.version(catalog.SILVER_TRANSACTIONS)
    before = rows(lake, catalog.SILVER_TRANSACTIONS)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE")}
    env["CARDSCORE__HOME"] = job.settings.home
    env["CARDSCORE__INGEST__GATE__AMOUNT_MAX"] = "50"  # stricter than the contract: fails
    proc = subprocess.run(
        [sys.executable, "jobs/ingest/main.py", "--date", DAY2.isoformat(), "--remote", embedded_url()],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "gate silver_transactions" in proc.stderr
    assert "expect_column_values_to_be_between(amount)" in proc.stderr
    assert "silver is unchanged" in proc.stderr
    assert lake.version(catalog.SILVER_TRANSACTIONS) == version
    assert rows(lake, catalog.SILVER_TRANSACTIONS) == before
    # The day's input is recorded; its rejected lines (none here) would be in quarantine.
    assert lake.read(catalog.BRONZE_TRANSACTIONS).where(F.col("landing_date") == F.lit(DAY2.isoformat()).cast("date")).count() > 0
    assert lake.exists(staging_table(TRANSACTIONS, DAY2))  # kept for inspection

    # The same failure in-process, then a pass once the setting is back to the contract's.
    strict = load_settings(overrides={"home": job.settings.home, "ingest": {"gate": {"amount_max": 50}}})
    with pytest.raises(IngestGateFailed) as failure:
        ingest_day(job_context(strict, spark), DAY2)
    assert failure.value.exit_code == 1 and len(failure.value.results) == 1
    assert lake.version(catalog.SILVER_TRANSACTIONS) == version
    assert ingest_day(job, DAY2).feeds["transactions"].silver_changed


def test_cli_backfill_and_help(spark, landed: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cardscore.cli import app

    monkeypatch.setenv("CARDSCORE__HOME", landed.home)
    runner = CliRunner()
    assert runner.invoke(app, ["run", "ingest", "--help"]).exit_code == 0
    result = runner.invoke(app, ["run", "ingest", "--from", "2018-04-01", "--to", "2018-04-03"])
    assert result.exit_code == 0, result.output
    assert "accepted (silver)" in result.output and "2018-04-01 .. 2018-04-03" in result.output
    lake = Lake(spark, landed)
    assert lake.read(catalog.SILVER_TRANSACTIONS).select("tx_date").distinct().count() == 3
    bad = runner.invoke(app, ["run", "ingest", "--date", "2018-04-01", "--from", "2018-04-01"])
    assert bad.exit_code == 2


@pytest.mark.classic
def test_spark_submit_runs_the_same_job(spark, landed: Settings) -> None:
    from cardscore.core.engine import embedded_url

    bin_dir = Path(sys.executable).parent
    dropped = ("SPARK_REMOTE", "PYSPARK_GATEWAY_PORT", "SPARK_CONNECT_MODE_ENABLED")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("CARDSCORE")}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "CARDSCORE__HOME": landed.home,
        "SPARK_REMOTE": embedded_url(),
        "PYSPARK_PYTHON": sys.executable,
    })
    proc = subprocess.run(
        [str(bin_dir / "spark-submit"), "jobs/ingest/main.py", "--date", DAY1.isoformat()],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"event": "ingest.summary"' in proc.stdout + proc.stderr  # spark-submit merges them
    lake = Lake(spark, landed)
    assert lake.read(catalog.SILVER_TRANSACTIONS).count() == len(read_landing_day(landed.landing_root, DAY1))


def test_a_day_whose_lines_are_all_rejected_is_not_published(spark, settings: Settings) -> None:
    job = job_context(settings, spark)
    write_lines(settings, "transactions", DAY1, "t.jsonl", [b"not json", tx_at(1, "2018-04-02T10:00:00Z")])
    with pytest.raises(IngestGateFailed, match=r"expect_column_mean_to_be_between\(amount\)"):
        ingest_day(job, DAY1)
    assert not job.lake.exists(catalog.SILVER_TRANSACTIONS)
    reasons = sorted(r.reason for r in job.lake.read(catalog.QUARANTINE).collect())
    assert reasons == ["malformed_json", "outside_day"]  # quarantine describes the input anyway


@pytest.mark.parametrize("feed_name", ["transactions", "labels"])
def test_suites_match_the_contracts_and_get_every_parameter(settings: Settings, feed_name: str) -> None:
    from cardscore.expectations.gate import load_suite_json
    from cardscore.jobs.ingest.stage import FeedReport, gate_parameters
    from cardscore.jobs.ingest.transforms import FEEDS

    feed = FEEDS[feed_name]
    suite = load_suite_json(feed.suite)
    expectations = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in suite["expectations"]}
    assert expectations[("expect_table_columns_to_match_ordered_list", None)]["column_list"] == feed.silver.field_names
    for name in feed.key:
        assert ("expect_column_values_to_be_unique", name) in expectations
    for f in feed.silver.fields:
        if not f.nullable and f.name in feed.event.field_names:
            assert ("expect_column_values_to_not_be_null", f.name) in expectations, f.name
    wanted = {v["$PARAMETER"] for kw in expectations.values() for v in kw.values() if isinstance(v, dict)}
    given = gate_parameters(JobContext(settings, None, None), feed, DAY1, FeedReport(feed_name, lines=3))
    assert wanted <= set(given)
    assert given["expected_rows"] == 3 and given["day_start"] == "2018-04-01T00:00:00"


def test_the_stage_reports_versions_and_counts(spark, settings: Settings) -> None:
    from cardscore.core.stage import StageCall, StageOutcome
    from cardscore.jobs.ingest.stage import SPEC

    write_lines(settings, "transactions", DAY1, "t.jsonl", [tx_at(1, "2018-04-01T10:00:00Z"), b"oops"])
    outcome = SPEC.run(StageCall(job_context(settings, spark), (DAY1,)))
    assert isinstance(outcome, StageOutcome) and outcome.status == "succeeded"
    assert outcome.outputs == {catalog.SILVER_TRANSACTIONS: 0, catalog.SILVER_LABELS: None,
                               catalog.SILVER_LABEL_REPORTS: None, catalog.QUARANTINE: 0}
    assert outcome.details["feeds"]["transactions"]["reasons"] == {"malformed_json": 1}
    assert outcome.message == "2 lines, 1 quarantined"
