"""The shared gate runner: real GX runs on pandas and on the embedded Spark engine."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cardscore.core.config import Settings
from cardscore.expectations import gate as gate_module
from cardscore.expectations.gate import GateFailed, docs_index, gate, validate

SUITE = {
    "name": "test_gate_suite",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0, "max_value": 1000}},
        {"type": "expect_table_row_count_to_equal", "kwargs": {"value": {"$PARAMETER": "expected_rows"}}},
    ],
    "meta": {"stage": "test"},
}


@pytest.fixture
def suite_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A test-only suite folder; the gate code under test is unchanged.
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "test_gate_suite.json").write_text(json.dumps(SUITE))
    monkeypatch.setattr(gate_module, "SUITES_DIR", folder)
    return folder


def test_passing_gate_on_pandas_builds_data_docs(settings: Settings, suite_dir: Path) -> None:
    df = pd.DataFrame({"id": [1, 2, 3], "amount": [1.0, 20.0, 999.0]})
    result = gate(df, "test_gate_suite", settings, "test", "run-1", {"expected_rows": 3})
    assert result.success and result.evaluated == 4 and result.failed == []
    assert docs_index(settings).is_file()


def test_failing_gate_on_spark_names_each_failed_expectation(spark, settings: Settings, suite_dir: Path) -> None:
    df = spark.createDataFrame([(1, 5.0), (1, -3.0), (None, 2000.0)], "id long, amount double")
    with pytest.raises(GateFailed) as failure:
        gate(df, "test_gate_suite", settings, "ingest", "run-2", {"expected_rows": 3})
    result = failure.value.result
    assert not result.success
    failed = {f.expectation: f for f in result.failed}
    assert set(failed) == {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
    }
    assert failed["expect_column_values_to_be_between"].unexpected_count == 2
    message = str(failure.value)
    assert message.startswith("ingest: gate test_gate_suite: 3 of 4 expectations failed")
    assert "expect_column_values_to_be_between(amount)" in message
    assert "2000" not in message  # offending values stay out of messages and logs
    assert failure.value.exit_code == 1


def test_run_time_parameters_are_applied(settings: Settings, suite_dir: Path) -> None:
    df = pd.DataFrame({"id": [1, 2], "amount": [1.0, 2.0]})
    result = validate(df, "test_gate_suite", settings, "run-3", {"expected_rows": 5})
    assert not result.success
    assert [f.expectation for f in result.failed] == ["expect_table_row_count_to_equal"]
    assert result.failed[0].observed_value == 2


def test_unknown_suite_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="no expectation suite 'nope'"):
        validate(pd.DataFrame({"a": [1]}), "nope", settings, "r")


def test_data_docs_have_an_index_that_reads_without_internet(settings: Settings, suite_dir: Path) -> None:
    """GX's index.html fills its tables with scripts from CDNs (blank offline); offline.html
    lists every result with its status and links each to its rendered page, with no remote
    resource. A failed gate's message points at its own page."""
    from urllib.parse import urlparse

    from cardscore.expectations.gate import offline_index

    df = pd.DataFrame({"id": [1, 2], "amount": [1.0, 2.0]})
    passed = validate(df, "test_gate_suite", settings, "run-ok", {"expected_rows": 2})
    quiet = validate(df, "test_gate_suite", settings, "run-no-docs", {"expected_rows": 2}, build_docs=False)
    with pytest.raises(GateFailed) as failure:
        gate(df, "test_gate_suite", settings, "test", "run-bad", {"expected_rows": 9})
    failed = failure.value.result
    assert passed.success and quiet.success and not failed.success
    for result in (passed, failed):
        assert result.docs_page and Path(urlparse(result.docs_page).path).is_file()
        assert "/validations/test_gate_suite/" in result.docs_page
    assert f"Data Docs: {failed.docs_page}" in str(failure.value)

    page = offline_index(settings).read_text(encoding="utf-8")
    assert "://" not in page and "<script" not in page  # nothing to fetch, nothing to run
    assert "3 validation results" in page and "1 failed" in page
    assert page.index("run-bad") < page.index("run-no-docs") < page.index("run-ok")  # newest first
    assert "run-no-docs <small>(no rendered page)" in page
    site = offline_index(settings).parent
    links = [part.split('"')[0] for part in page.split('href="')[1:]]
    assert any("run-ok" in link for link in links) and any("run-bad" in link for link in links)
    assert all((site / link).is_file() for link in links), links
    assert 'href="expectations/test_gate_suite.html"' in page
