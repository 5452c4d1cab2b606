"""A suite's verdict from ONE aggregate of the data: the cheap pass of the gate.

Great Expectations on a Spark DataFrame runs one engine query per expectation domain (each
column's null filter is a domain of its own), a window over the whole frame for each
uniqueness check and, for the SUMMARY result format, one more query per expectation for its
example values: about twenty queries for the predictions suite, ~1.3 s on a million rows. Yet
every expectation the project's suites use decides on a count or a statistic that one
`DataFrame.agg` can compute for all of them at once.

`metrics_frame(df, suite, parameters)` compiles the suite (its JSON, `$PARAMETER`s resolved)
into that one aggregate (plus the schema, for the column-list check) and returns the
pre-aggregated frame: one row per expectation, with the number GX decides on (`observed`:
the unexpected-row count of a map expectation, the row count, the mean) and the range that
passes (`low`..`high`). The gate validates THAT frame with Great Expectations (two
expectations over a few rows, `expectations/gate.py`); when it fails, the gate runs the full
suite on the data for the failure details and the Data Docs, so what a failure reports does
not change.

Semantics follow GX 1.24's Spark implementations exactly (tests/expectations/test_aggregate.py
compares the verdict of every expectation with a full GX run on frames built to break each):

* map expectations ignore rows outside their domain (a null value, a pair or column list per
  `ignore_row_if`), pass vacuously on an empty domain, and use GX's own conditions
  (`between`: `col >= min & col <= max`; pairs: `A >= B | A <=> B` with `or_equal`);
* uniqueness: a value (or tuple) repeated among the domain's rows fails; the count reported
  is rows minus distinct values;
* `expect_column_mean_to_be_between`: the mean of the non-null values; no value fails.

An expectation or argument this module does not know (`mostly` below 1, `row_condition`,
`strict_min`, a missing `$PARAMETER`, a bound on a column type GX would reject, ...) raises
`NotCompilable`, and the gate runs the full suite as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Columns of the pre-aggregated frame.
CHECK, EXPECTATION, COLUMN, OBSERVED, LOW, HIGH = "check", "expectation", "column", "observed", "low", "high"
# Column types GX's `between` rejects against non-string bounds (its INVALID_COLUMN_TYPES).
_TEXT_OR_BOOL = ("StringType", "CharType", "VarcharType", "BooleanType")
_MEAN_TYPES = ("IntegerType", "LongType", "FloatType", "DoubleType", "DecimalType")  # GX's column_mean
_COMMON_KWARGS = frozenset({"batch_id"})


class NotCompilable(ValueError):
    """The suite uses something this module does not compute; run the full GX suite."""


@dataclass(frozen=True)
class Check:
    """One expectation compiled: `observed` passes when `low <= observed <= high`."""

    index: int
    expectation: str
    column: str | None
    low: float
    high: float
    # The observed value: an aggregate column (computed in the one query) or a constant.
    aggregate: Column | None = None
    constant: float | None = None


def metrics_frame(df: DataFrame, suite: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The pre-aggregated frame of `df` for `suite` (one engine query). Raises `NotCompilable`."""
    checks = compile_checks(df, suite, parameters or {})
    aggregates = [c.aggregate.alias(f"c{c.index}") for c in checks if c.aggregate is not None]
    values = df.agg(*aggregates).collect()[0].asDict() if aggregates else {}
    rows = []
    for check in checks:
        observed = check.constant if check.aggregate is None else values[f"c{check.index}"]
        rows.append({
            CHECK: check.index,
            EXPECTATION: check.expectation,
            COLUMN: check.column,
            OBSERVED: math.nan if observed is None else float(observed),
            LOW: check.low,
            HIGH: check.high,
        })
    return pd.DataFrame(rows, columns=[CHECK, EXPECTATION, COLUMN, OBSERVED, LOW, HIGH])


def passed(frame: pd.DataFrame) -> pd.Series:
    """Each check's verdict (NaN observed: failed), as GX decides it on the frame."""
    observed = frame[OBSERVED]
    return (observed >= frame[LOW]) & (observed <= frame[HIGH])


def compile_checks(df: DataFrame, suite: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[Check]:
    """The suite's expectations as checks over `df` (its schema is read, its rows are not)."""
    types = {f.name: type(f.dataType).__name__ for f in df.schema.fields}
    columns = [f.name for f in df.schema.fields]
    checks = []
    for index, expectation in enumerate(suite.get("expectations", [])):
        kind = expectation.get("type")
        compiler = _COMPILERS.get(kind)
        if compiler is None:
            raise NotCompilable(f"{kind} is not computed by the aggregate pass")
        kwargs = {k: _resolve(v, parameters) for k, v in (expectation.get("kwargs") or {}).items()}
        mostly = kwargs.pop("mostly", 1)
        if mostly not in (1, 1.0):
            raise NotCompilable(f"{kind}: mostly={mostly}")
        for name in kwargs:
            if name not in _ALLOWED[kind] | _COMMON_KWARGS:
                raise NotCompilable(f"{kind}: argument {name!r}")
        for name in ("column", "column_A", "column_B"):
            if name in kwargs and kwargs[name] not in types:
                raise NotCompilable(f"{kind}: no column {kwargs[name]!r}")  # GX reports it
        checks.append(compiler(index, kind, kwargs, types, columns))
    return checks


# ------------------------------------------------------------------------------ compilers


def _count(condition: Column) -> Column:
    """Rows where `condition` is true (null counts as false, as GX's when/otherwise does; 0 on
    no rows, where a sum would be null)."""
    from pyspark.sql import functions as F

    return F.count(F.when(condition, F.lit(1)))


def _map(index: int, kind: str, column: str | None, domain: Column | None, unexpected: Column) -> Check:
    """A map expectation: unexpected rows of its domain; an empty domain passes vacuously."""
    from pyspark.sql import functions as F

    in_domain = domain if domain is not None else F.lit(True)
    # `unexpected` is evaluated only inside the domain (GX filters the domain first).
    return Check(index, kind, column, 0.0, 0.0, aggregate=_count(in_domain & unexpected))


def _not_null(index, kind, kwargs, types, columns) -> Check:
    from pyspark.sql import functions as F

    return _map(index, kind, kwargs["column"], None, F.col(kwargs["column"]).isNull())


def _unique(index, kind, kwargs, types, columns) -> Check:
    from pyspark.sql import functions as F

    column = F.col(kwargs["column"])
    # Zero exactly when no non-null value repeats: GX's window count is then <= 1 everywhere.
    repeats = F.count(column) - F.count_distinct(column)
    return Check(index, kind, kwargs["column"], 0.0, 0.0, aggregate=repeats)


def _compound_unique(index, kind, kwargs, types, columns) -> Check:
    from functools import reduce

    from pyspark.sql import functions as F

    names = list(kwargs["column_list"])
    if any(n not in types for n in names):
        raise NotCompilable(f"{kind}: a column of {names} is missing")
    ignore = kwargs.get("ignore_row_if", "all_values_are_missing")
    nulls = [F.col(n).isNull() for n in names]
    if ignore == "all_values_are_missing":
        domain = ~reduce(lambda a, b: a & b, nulls)
    elif ignore == "any_value_is_missing":
        domain = ~reduce(lambda a, b: a | b, nulls)
    elif ignore == "never":
        domain = F.lit(True)
    else:
        raise NotCompilable(f"{kind}: ignore_row_if={ignore!r}")
    # A struct is never null, and GX partitions by the same struct: tuples with nulls compare equal.
    tuples = F.when(domain, F.struct(*[F.col(n) for n in names]))
    repeats = _count(domain) - F.count_distinct(tuples)
    return Check(index, kind, ",".join(names), 0.0, 0.0, aggregate=repeats)


def _between(index, kind, kwargs, types, columns) -> Check:
    from pyspark.sql import functions as F

    name, low, high = kwargs["column"], kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise NotCompilable(f"{kind}: no bound")  # GX raises
    if low is not None and high is not None and _greater(low, high):
        raise NotCompilable(f"{kind}: min_value > max_value")  # GX raises
    bounds = [b for b in (low, high) if b is not None]
    if types[name] in _TEXT_OR_BOOL and not all(isinstance(b, str) for b in bounds):
        raise NotCompilable(f"{kind}: {types[name]} column with non-string bounds")  # GX rejects it
    column = F.col(name)
    expected = None
    if low is not None:
        expected = column >= F.lit(low)
    if high is not None:
        upper = column <= F.lit(high)
        expected = upper if expected is None else expected & upper
    return _map(index, kind, name, column.isNotNull(), ~expected)


def _in_set(index, kind, kwargs, types, columns) -> Check:
    from pyspark.sql import functions as F

    name, value_set = kwargs["column"], kwargs.get("value_set")
    column = F.col(name)
    if value_set is None:  # GX: vacuously true
        return Check(index, kind, name, 0.0, 0.0, constant=0.0)
    return _map(index, kind, name, column.isNotNull(), ~column.isin(list(value_set)))


def _pair_greater(index, kind, kwargs, types, columns) -> Check:
    from pyspark.sql import functions as F

    a, b = F.col(kwargs["column_A"]), F.col(kwargs["column_B"])
    ignore = kwargs.get("ignore_row_if", "both_values_are_missing")
    if ignore == "both_values_are_missing":
        domain = ~(a.isNull() & b.isNull())
    elif ignore == "either_value_is_missing":
        domain = ~(a.isNull() | b.isNull())
    elif ignore == "neither":
        domain = F.lit(True)
    else:
        raise NotCompilable(f"{kind}: ignore_row_if={ignore!r}")
    expected = ((a >= b) | a.eqNullSafe(b)) if kwargs.get("or_equal") else (a > b)
    label = f"{kwargs['column_A']},{kwargs['column_B']}"
    return _map(index, kind, label, domain, ~expected)


def _mean_between(index, kind, kwargs, types, columns) -> Check:
    from pyspark.sql import functions as F

    name, low, high = kwargs["column"], kwargs.get("min_value"), kwargs.get("max_value")
    if types[name] not in _MEAN_TYPES:
        raise NotCompilable(f"{kind}: {types[name]} column")  # GX raises
    if low is None and high is None:
        raise NotCompilable(f"{kind}: no bound")
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in (low, high) if b is not None):
        raise NotCompilable(f"{kind}: non-numeric bounds")
    return Check(
        index, kind, name,
        -math.inf if low is None else float(low),
        math.inf if high is None else float(high),
        aggregate=F.avg(F.col(name)).cast("double"),  # null (no value) fails, as in GX
    )


def _row_count(index, kind, kwargs, types, columns) -> Check:
    from pyspark.sql import functions as F

    value = kwargs.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise NotCompilable(f"{kind}: value {value!r}")
    return Check(index, kind, None, float(value), float(value), aggregate=F.count(F.lit(1)))


def _row_count_between(index, kind, kwargs, types, columns) -> Check:
    from pyspark.sql import functions as F

    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise NotCompilable(f"{kind}: no bound")  # GX raises
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in (low, high) if b is not None):
        raise NotCompilable(f"{kind}: non-numeric bounds")
    return Check(index, kind, None, -math.inf if low is None else float(low), math.inf if high is None else float(high),
                 aggregate=F.count(F.lit(1)))


def _column_list(index, kind, kwargs, types, columns) -> Check:
    expected = kwargs.get("column_list")
    matches = expected is None or list(expected) == list(columns)
    return Check(index, kind, None, 0.0, 0.0, constant=0.0 if matches else 1.0)


_COMPILERS: dict[str, Callable[..., Check]] = {
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_unique": _unique,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_pair_values_a_to_be_greater_than_b": _pair_greater,
    "expect_column_mean_to_be_between": _mean_between,
    "expect_table_row_count_to_equal": _row_count,
    "expect_table_row_count_to_be_between": _row_count_between,
    "expect_table_columns_to_match_ordered_list": _column_list,
}
_ALLOWED: dict[str, frozenset[str]] = {
    "expect_column_values_to_not_be_null": frozenset({"column"}),
    "expect_column_values_to_be_unique": frozenset({"column"}),
    "expect_compound_columns_to_be_unique": frozenset({"column_list", "ignore_row_if"}),
    "expect_column_values_to_be_between": frozenset({"column", "min_value", "max_value"}),
    "expect_column_values_to_be_in_set": frozenset({"column", "value_set"}),
    "expect_column_pair_values_a_to_be_greater_than_b": frozenset({"column_A", "column_B", "or_equal", "ignore_row_if"}),
    "expect_column_mean_to_be_between": frozenset({"column", "min_value", "max_value"}),
    "expect_table_row_count_to_equal": frozenset({"value"}),
    "expect_table_row_count_to_be_between": frozenset({"min_value", "max_value"}),
    "expect_table_columns_to_match_ordered_list": frozenset({"column_list"}),
}


def _resolve(value: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
        name = value["$PARAMETER"]
        if name not in parameters:
            raise NotCompilable(f"no value for $PARAMETER {name!r}")
        return parameters[name]
    if isinstance(value, dict) and "$PARAMETER" in value:
        raise NotCompilable(f"parameter expression {value!r}")
    return value


def _greater(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:
        raise NotCompilable(f"bounds {a!r} and {b!r} do not compare") from None
