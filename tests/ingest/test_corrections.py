"""Supersede and retract landing files: silver is rebuilt from the surviving files only, labels
fall back to the report silver held before, bronze and quarantine keep the history, and every
step is idempotent (real Sail engine, real Delta tables, real GX gates)."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql import functions as F

from cardscore.core import catalog
from cardscore.core.config import Settings, load_settings
from cardscore.core.stage import JobContext, job_context
from cardscore.jobs.ingest.corrections import (
    CorrectionError,
    day_status,
    retract,
    supersede,
    withdrawals,
)
from cardscore.jobs.ingest.landing import landing_file_uri
from cardscore.jobs.ingest.stage import IngestGateFailed, ingest_day
from tests.ingest.test_ingest import label, label_reports, rows, tx_at, write_lines

DAY1, DAY2 = date(2018, 4, 1), date(2018, 4, 2)


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Hand-written days with one feed each: a missing feed is not what these tests check."""
    gate = {"min_day_lines": {"transactions": 0, "labels": 0}}
    return load_settings(overrides={"home": str(tmp_path / "home"), "ingest": {"gate": gate}})


@pytest.fixture
def job(spark, settings: Settings) -> JobContext:
    return job_context(settings, spark)


def day_rows(job: JobContext, table: str, column: str, day: date) -> list[tuple]:
    return rows(job.lake, table, F.col(column) == F.lit(day.isoformat()).cast("date"))


def test_a_superseding_file_replaces_a_published_day_with_wrong_amounts(job: JobContext) -> None:
    lake = job.lake
    wrong = [tx_at(i, f"2018-04-01T{i % 24:02d}:00:00Z", amount=1000.0 + i) for i in range(1, 21)]  # cents, not units
    right = [tx_at(i, f"2018-04-01T{i % 24:02d}:00:00Z", amount=10.0 + i / 100) for i in range(1, 21)]
    first = write_lines(job.settings, "transactions", DAY1, "t.jsonl", wrong)
    ingest_day(job, DAY1)  # plausible enough to pass the gates: published

    # The whole day re-sent: every id now conflicts. The gate stops it, naming the cause.
    second = write_lines(job.settings, "transactions", DAY1, "t-v2.jsonl", right)
    published = day_rows(job, catalog.SILVER_TRANSACTIONS, "tx_date", DAY1)
    with pytest.raises(IngestGateFailed) as failure:
        ingest_day(job, DAY1)
    assert str(failure.value).startswith("ingest: transactions 2018-04-01: 40 of 40 lines rejected: duplicate_conflict\n")
    assert day_rows(job, catalog.SILVER_TRANSACTIONS, "tx_date", DAY1) == published

    done = supersede(job, DAY1, "t-v2.jsonl", reason="amounts were in cents", actor="ops")
    assert done.withdrawn == [first] and "t.jsonl superseded by t-v2.jsonl" in done.message()
    assert supersede(job, DAY1, "t-v2.jsonl", reason="again", actor="ops").withdrawn == []  # idempotent
    assert lake.read(catalog.LANDING_CORRECTIONS).count() == 1

    report = ingest_day(job, DAY1).feeds["transactions"]
    assert (report.files, report.files_withdrawn, report.withdrawn, report.accepted, report.quarantined) == (2, 1, 20, 20, 0)
    silver = lake.read(catalog.SILVER_TRANSACTIONS).collect()
    assert sorted((r.transaction_id, r.amount) for r in silver) == [(i, 10.0 + i / 100) for i in range(1, 21)]
    assert {r.source_file for r in silver} == {second}
    # Nothing is deleted: bronze has both files, quarantine keeps what it said about the old one.
    assert lake.read(catalog.BRONZE_TRANSACTIONS).count() == 40
    assert {r.source_file for r in lake.read(catalog.QUARANTINE).collect()} == {first}

    status = {f.name: f for f in day_status(job, DAY1)}
    assert status["t.jsonl"].state == "superseded" and status["t-v2.jsonl"].state == "in effect"
    assert "by ops at" in status["t.jsonl"].withdrawal.describe() and "amounts were in cents" in status["t.jsonl"].withdrawal.describe()
    assert (status["t-v2.jsonl"].in_silver, status["t.jsonl"].in_silver) == (20, 0)
    assert status["t.jsonl"].quarantined == {"duplicate_conflict": 20}

    versions = {t: lake.version(t) for t in (catalog.SILVER_TRANSACTIONS, catalog.QUARANTINE, catalog.BRONZE_TRANSACTIONS)}
    ingest_day(job, DAY1)  # a rerun adds nothing
    assert {t: lake.version(t) for t in versions} == versions


def test_withdrawn_label_reports_give_way_to_the_report_silver_held_before(job: JobContext) -> None:
    lake = job.lake
    write_lines(job.settings, "labels", DAY1, "l1.jsonl", [label(1, "2018-04-01T09:00:00Z"), label(2, "2018-04-01T10:00:00Z")])
    ingest_day(job, DAY1)
    before = {r[0]: r for r in rows(lake, catalog.SILVER_LABELS)}
    write_lines(job.settings, "labels", DAY2, "l2.jsonl", [
        label(1, "2018-04-02T18:00:00Z", is_fraud=False, scenario=None),  # re-reported: wins
        label(6, "2018-04-02T08:00:00Z"),
    ])
    ingest_day(job, DAY2)
    assert {r.transaction_id: r.is_fraud for r in lake.read(catalog.SILVER_LABELS).collect()} == {1: False, 2: True, 6: True}

    # A correction that reports transaction 1 EARLIER than the withdrawn report: it still wins,
    # because the withdrawn report no longer counts; 6, absent from it, leaves silver.
    write_lines(job.settings, "labels", DAY2, "l2-v2.jsonl", [label(1, "2018-04-02T07:00:00Z", scenario=3)])
    supersede(job, DAY2, "l2-v2.jsonl", reason="wrong verdicts", actor="ops")
    report = ingest_day(job, DAY2).feeds["labels"]
    assert (report.accepted, report.withdrawn, report.restored) == (1, 2, 2)
    silver = {r.transaction_id: r for r in lake.read(catalog.SILVER_LABELS).collect()}
    assert sorted(silver) == [1, 2]
    assert (silver[1].is_fraud, silver[1].fraud_scenario, silver[1].reported_date) == (True, 3, DAY2)
    # Every report: DAY2's partition rebuilt from the surviving file only, DAY1's untouched.
    assert label_reports(lake) == [(1, "07:00", True, 3, DAY2), (1, "09:00", True, 1, DAY1),
                              (2, "10:00", True, 1, DAY1)]

    # Retracting the correction too: transaction 1 is back to its first report, exactly.
    retract(job, DAY2, "l2-v2.jsonl", reason="sent by mistake", actor="ops")
    ingest_day(job, DAY2)
    assert {r[0]: r for r in rows(lake, catalog.SILVER_LABELS)} == before
    assert label_reports(lake) == [(1, "09:00", True, 1, DAY1), (2, "10:00", True, 1, DAY1)]
    version = lake.version(catalog.SILVER_LABELS)
    ingest_day(job, DAY2)
    ingest_day(job, DAY1)  # the earlier day's own rerun does not bring anything back either
    assert lake.version(catalog.SILVER_LABELS) == version
    assert set(withdrawals(lake, DAY2)) == {landing_file_uri(job.settings.landing_root, "labels", DAY2, n)
                                            for n in ("l2.jsonl", "l2-v2.jsonl")}


def test_retracting_the_only_file_of_a_day(spark, job: JobContext, tmp_path) -> None:
    lake = job.lake
    write_lines(job.settings, "transactions", DAY1, "t.jsonl", [tx_at(i, "2018-04-01T10:00:00Z") for i in (1, 2, 3)])
    ingest_day(job, DAY1)
    retract(job, DAY1, "t.jsonl", reason="not ours", actor="ops")

    strict = job_context(load_settings(overrides={"home": job.settings.home}), spark)  # a day needs transactions
    with pytest.raises(IngestGateFailed, match=r"^ingest: transactions 2018-04-01: every transactions file of the day is superseded or retracted"):
        ingest_day(strict, DAY1)
    assert lake.read(catalog.SILVER_TRANSACTIONS).count() == 3

    ingest_day(job, DAY1)  # where an empty day is allowed, the day empties
    assert lake.read(catalog.SILVER_TRANSACTIONS).count() == 0
    assert lake.read(catalog.BRONZE_TRANSACTIONS).count() == 3


def test_corrections_that_cannot_be_recorded_say_why(job: JobContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cardscore.cli import app

    write_lines(job.settings, "transactions", DAY1, "t.jsonl", [tx_at(1, "2018-04-01T10:00:00Z")])
    with pytest.raises(CorrectionError, match=r"no landing file 'nope.jsonl' for 2018-04-01 .*\(files of the day: t.jsonl\)"):
        retract(job, DAY1, "nope.jsonl", reason="x")
    with pytest.raises(CorrectionError, match="the only transactions file of 2018-04-01"):
        supersede(job, DAY1, "t.jsonl", reason="x")
    with pytest.raises(CorrectionError, match="needs a --reason"):
        retract(job, DAY1, "t.jsonl", reason=" ")
    assert not job.lake.exists(catalog.LANDING_CORRECTIONS)

    monkeypatch.setenv("CARDSCORE__HOME", job.settings.home)
    runner = CliRunner()
    missing = runner.invoke(app, ["landing", "retract", "--date", "2018-04-01", "--file", "nope.jsonl", "--reason", "x"])
    assert missing.exit_code == 1 and "no landing file 'nope.jsonl'" in missing.output
    done = runner.invoke(app, ["landing", "retract", "--date", "2018-04-01", "--file", "t.jsonl", "--reason", "x", "--actor", "me"])
    assert done.exit_code == 0 and "t.jsonl retracted" in done.output
    status = runner.invoke(app, ["landing", "status", "--date", "2018-04-01", "--json"])
    assert status.exit_code == 0 and '"state": "retracted"' in status.output and '"actor": "me"' in status.output
    assert runner.invoke(app, ["landing", "status", "--date", "2018-04-01", "--bad"]).exit_code == 2
