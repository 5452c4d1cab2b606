"""The gate's aggregate pass decides every expectation as a full GX run does.

One suite uses every expectation type of the project's suites, with the argument variants
they allow (one bound, both bounds, timestamps against string bounds, `or_equal`, each
`ignore_row_if`, value sets, means of numbers and of nothing); frames are built to pass and to
break each of them (nulls, NaN, duplicates, values exactly at a bound, pairs with one null).
For every frame, the verdict of each expectation on the pre-aggregated frame equals the one
of GX 1.24 running the suite on the data (real GX, real Spark engine)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from cardscore.core.config import Settings
from cardscore.expectations import gate as gate_module
from cardscore.expectations.aggregate import NotCompilable, metrics_frame, passed
from cardscore.expectations.gate import SUITES_DIR, load_suite_json, validate

SCHEMA = (
    "id long, amount double, ts timestamp, version string, a long, b long, c1 long, c2 string, "
    "empty double"
)
COLUMNS = ["id", "amount", "ts", "version", "a", "b", "c1", "c2", "empty"]
EXPECTATIONS = [
    ("expect_table_columns_to_match_ordered_list", {"column_list": COLUMNS}),
    ("expect_table_columns_to_match_ordered_list", {"column_list": list(reversed(COLUMNS))}),
    ("expect_table_row_count_to_equal", {"value": {"$PARAMETER": "expected_rows"}}),
    ("expect_table_row_count_to_be_between", {"min_value": 2, "max_value": 4}),
    ("expect_table_row_count_to_be_between", {"min_value": {"$PARAMETER": "rows_min"}, "max_value": None}),
    ("expect_table_row_count_to_be_between", {"min_value": 0, "max_value": 3}),
    ("expect_column_values_to_not_be_null", {"column": "id"}),
    ("expect_column_values_to_not_be_null", {"column": "amount"}),
    ("expect_column_values_to_not_be_null", {"column": "empty"}),
    ("expect_column_values_to_be_unique", {"column": "id"}),
    ("expect_column_values_to_be_unique", {"column": "amount"}),
    ("expect_column_values_to_be_between", {"column": "amount", "min_value": 0.0, "max_value": 100.0}),
    ("expect_column_values_to_be_between", {"column": "amount", "min_value": 0.0}),
    ("expect_column_values_to_be_between", {"column": "amount", "max_value": 50.0}),
    ("expect_column_values_to_be_between", {"column": "id", "min_value": 1, "max_value": 5}),
    ("expect_column_values_to_be_between", {"column": "empty", "min_value": 0, "max_value": 1}),
    ("expect_column_values_to_be_between",
     {"column": "ts", "min_value": {"$PARAMETER": "day_start"}, "max_value": {"$PARAMETER": "day_end"}}),
    ("expect_column_values_to_be_in_set", {"column": "version", "value_set": {"$PARAMETER": "versions"}}),
    ("expect_column_mean_to_be_between", {"column": "amount", "min_value": 0.0, "max_value": 30.0}),
    ("expect_column_mean_to_be_between", {"column": "amount", "min_value": 40.0}),
    ("expect_column_mean_to_be_between", {"column": "empty", "min_value": 0.0, "max_value": 1.0}),
    ("expect_column_pair_values_a_to_be_greater_than_b", {"column_A": "a", "column_B": "b", "or_equal": True}),
    ("expect_column_pair_values_a_to_be_greater_than_b", {"column_A": "a", "column_B": "b"}),
    ("expect_column_pair_values_a_to_be_greater_than_b",
     {"column_A": "a", "column_B": "b", "or_equal": True, "ignore_row_if": "either_value_is_missing"}),
    ("expect_column_pair_values_a_to_be_greater_than_b",
     {"column_A": "a", "column_B": "b", "or_equal": True, "ignore_row_if": "neither"}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["c1", "c2"]}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["c1", "c2"], "ignore_row_if": "any_value_is_missing"}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["c1", "c2"], "ignore_row_if": "never"}),
]
SUITE = {
    "name": "aggregate_semantics",
    "expectations": [{"type": t, "kwargs": k, "meta": {"i": i}} for i, (t, k) in enumerate(EXPECTATIONS)],
}
PARAMETERS = {"rows_min": 4, "day_start": "2018-05-08T00:00:00", "day_end": "2018-05-08T23:59:59.999999", "versions": ["3"]}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


GOOD = [
    (1, 10.0, ts("2018-05-08 00:00:00"), "3", 5, 5, 1, "x", None),
    (2, 20.0, ts("2018-05-08 23:59:59.999999"), "3", 6, 1, 1, "y", None),
    (3, 0.0, ts("2018-05-08 12:00:00"), "3", 9, 8, 2, "x", None),
]
BAD = [
    (1, 100.0, ts("2018-05-07 23:59:59.999999"), "3", 5, 5, 1, "x", 0.5),  # amount at the bound
    (1, float("nan"), ts("2018-05-08 12:00:00"), "4", 4, 5, 1, "x", 2.0),  # NaN, duplicate id, a < b
    (None, -1.0, ts("2018-05-09 00:00:00"), None, None, 5, None, None, None),  # one of the pair null
    (7, None, None, "3", None, None, None, None, None),  # both of the pair null
    (8, 60.0, ts("2018-05-08 01:00:00"), "3", 3, None, 2, None, None),
    (9, 60.0, ts("2018-05-08 02:00:00"), "3", 2, 2, 2, None, None),  # (2, null) twice
]


@pytest.fixture
def suite_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "aggregate_semantics.json").write_text(json.dumps(SUITE))
    monkeypatch.setattr(gate_module, "SUITES_DIR", folder)
    return folder


def full_verdicts(df, settings: Settings, parameters: dict) -> list[bool]:
    """Each expectation's success in a full GX run on the data, in suite order."""
    import great_expectations as gx

    context = gate_module._context(settings)
    suite = context.suites.add_or_update(gx.ExpectationSuite(**SUITE))
    asset = gate_module._asset(context, df, "aggregate_semantics")
    definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(
        name="aggregate-semantics", data=gate_module._batch_definition(asset), suite=suite))
    run = definition.run(batch_parameters={"dataframe": df}, expectation_parameters=parameters,
                         result_format="BOOLEAN_ONLY")
    by_index = {int(r.expectation_config.meta["i"]): bool(r.success) for r in run.results}
    return [by_index[i] for i in range(len(EXPECTATIONS))]


@pytest.mark.parametrize("rows", [GOOD, BAD, []], ids=["good", "bad", "empty"])
def test_every_expectation_gets_the_verdict_of_a_full_gx_run(spark, settings: Settings, suite_dir: Path,
                                                            rows: list) -> None:
    df = spark.createDataFrame(rows, SCHEMA)
    parameters = {**PARAMETERS, "expected_rows": len(rows)}
    frame = metrics_frame(df, SUITE, parameters)
    ours = passed(frame).tolist()
    theirs = full_verdicts(df, settings, parameters)
    mismatches = [(EXPECTATIONS[i], ours[i], theirs[i]) for i in range(len(EXPECTATIONS)) if ours[i] != theirs[i]]
    assert mismatches == []
    # The whole gate: decided by the aggregate pass when it passes, by the full run otherwise.
    result = validate(df, "aggregate_semantics", settings, "agg", parameters, build_docs=False)
    assert result.success == all(theirs)
    assert result.strategy == ("aggregate" if all(theirs) else "full")
    if rows is BAD:  # the cases are exercised: both verdicts occur
        assert 0 < sum(theirs) < len(theirs)


def test_the_gx_check_of_the_aggregated_frame_fails_a_nan_observation(spark, settings: Settings,
                                                                    suite_dir: Path) -> None:
    """A mean over no value is NaN in the pre-aggregated frame: GX must fail it, not skip it."""
    df = spark.createDataFrame(GOOD, SCHEMA)
    parameters = {**PARAMETERS, "expected_rows": len(GOOD)}
    frame = metrics_frame(df, SUITE, parameters)
    assert frame["observed"].isna().sum() == 1  # the mean of the all-null column
    success, evaluated = gate_module._aggregate_verdict(df, "aggregate_semantics", parameters, required=True)
    assert (success, evaluated) == (False, len(EXPECTATIONS))


def test_what_the_aggregate_pass_does_not_compute_runs_the_full_suite(spark, settings: Settings) -> None:
    df = spark.createDataFrame(GOOD, SCHEMA)
    mostly = {"name": "s", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id", "mostly": 0.9}}]}
    with pytest.raises(NotCompilable, match="mostly"):
        metrics_frame(df, mostly, {})
    unknown = {"name": "s", "expectations": [
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "version", "regex": "^3$"}}]}
    with pytest.raises(NotCompilable, match="match_regex"):
        metrics_frame(df, unknown, {})
    with pytest.raises(NotCompilable, match="PARAMETER"):
        metrics_frame(df, SUITE, {})


RUN_TIME_VALUES = {  # what the stages pass for the suites' $PARAMETERs (kind of value)
    "expected_rows": 0, "model_versions": ["1"], "max_mean_score": 0.5,
    "day_start": "2018-05-08T00:00:00", "day_end": "2018-05-08T23:59:59.999999",
    "amount_min": 0.0, "amount_max": 100_000.0, "mean_amount_min": 1.0, "mean_amount_max": 10_000.0,
    "fraud_scenario_min": 0, "fraud_scenario_max": 3, "rows_min": 0, "rows_max": None,
}


@pytest.mark.parametrize("name", sorted(p.stem for p in SUITES_DIR.glob("*.json")))
def test_every_project_suite_compiles_to_the_aggregate_pass(spark, name: str) -> None:
    """No production suite falls back to the full run: every expectation and argument is
    computed by the aggregate pass, on the columns (and types) the stages gate."""
    suite = load_suite_json(name)
    df = spark.createDataFrame([], _schema_of(name, suite))
    frame = metrics_frame(df, suite, RUN_TIME_VALUES)
    assert len(frame) == len(suite["expectations"])
    # On no rows everything passes vacuously, except a mean (of nothing: it fails, as in GX).
    is_mean = frame["expectation"] == "expect_column_mean_to_be_between"
    assert (passed(frame) == ~is_mean).all()


def _schema_of(name: str, suite: dict):
    from pyspark.sql import types as T

    from cardscore.schemas.contracts import PREDICTION_RECORD, SILVER_LABEL, SILVER_TRANSACTION

    contracts = {"predictions": PREDICTION_RECORD, "silver_transactions": SILVER_TRANSACTION,
                 "silver_labels": SILVER_LABEL}
    if name in contracts:
        return contracts[name].spark_schema()
    # The gold snapshots (features/README.md): keys and counts are longs, the rest doubles.
    columns = next(e["kwargs"]["column_list"] for e in suite["expectations"]
                   if e["type"] == "expect_table_columns_to_match_ordered_list")
    kinds = {"event_timestamp": T.TimestampType(), "created_at": T.TimestampType(), "snapshot_date": T.DateType(),
             "event_time": T.TimestampType(), "tx_date": T.DateType()}  # the last two: gold.fresh_features
    return T.StructType([
        T.StructField(c, kinds.get(c, T.LongType() if c.endswith("_id") or "_nb_tx_" in c else T.DoubleType()))
        for c in columns
    ])
