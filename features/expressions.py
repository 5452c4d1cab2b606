"""A tiny expression language for features computed from a transaction's own fields.

A feature written once as an expression tree runs everywhere without a second copy:

    HOUR = (Input("epoch_us") // MICROS_PER_HOUR) % 24
    NIGHT = as_float(HOUR <= 6)

    evaluate(NIGHT, {"epoch_us": 1_523_059_200_000_000})      # Python ints -> 1.0
    evaluate(NIGHT, {"epoch_us": np.array([...], np.int64)})   # numpy int64 -> float64 array
    to_column(NIGHT, {"epoch_us": F.unix_micros("event_time")})  # a Spark Column (no UDF)

The language is deliberately small: integer inputs, integer constants, `+`, floor division
and modulo by a positive integer constant, comparisons with a constant, and `as_float`.
That is enough for calendar features on epoch microseconds and keeps every emission exact:

* Python ints and numpy int64 arrays both floor (`//`) and take the divisor's sign (`%`);
* on Spark, `a % n` is `pmod(a, n)` and `a // n` is `div(a - pmod(a, n), n)`: the dividend is
  then a multiple of n, so the engine's truncating integer division is exact floor division,
  also before 1970 (a double division would round for large values);
* comparisons give booleans, `as_float` gives 0.0 / 1.0 as float64 (a Spark double).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import Column


class Expr:
    """A node; the operators build bigger trees (constants must be ints)."""

    def __add__(self, other: int) -> Expr:
        return Add(self, _constant(other))

    def __floordiv__(self, other: int) -> Expr:
        return FloorDiv(self, _positive(other))

    def __mod__(self, other: int) -> Expr:
        return Mod(self, _positive(other))

    def __ge__(self, other: int) -> Expr:  # type: ignore[override]
        return Compare(self, ">=", _constant(other))

    def __le__(self, other: int) -> Expr:  # type: ignore[override]
        return Compare(self, "<=", _constant(other))


@dataclass(frozen=True, eq=False)
class Input(Expr):
    """A named integer input (e.g. epoch microseconds)."""

    name: str


@dataclass(frozen=True, eq=False)
class Add(Expr):
    operand: Expr
    constant: int


@dataclass(frozen=True, eq=False)
class FloorDiv(Expr):
    operand: Expr
    divisor: int  # > 0


@dataclass(frozen=True, eq=False)
class Mod(Expr):
    operand: Expr
    divisor: int  # > 0: the result is in [0, divisor)


@dataclass(frozen=True, eq=False)
class Compare(Expr):
    operand: Expr
    op: str  # ">=" or "<="
    constant: int


@dataclass(frozen=True, eq=False)
class AsFloat(Expr):
    """A boolean as 0.0 / 1.0 (float64; a Spark double)."""

    operand: Expr


def as_float(node: Expr) -> Expr:
    return AsFloat(node)


# ------------------------------------------------------------------------------ emitters


def evaluate(node: Expr, env: Mapping[str, Any]) -> Any:
    """The value of `node` for Python ints or numpy int64 arrays in `env` (same arithmetic)."""
    if isinstance(node, Input):
        return env[node.name]
    value = evaluate(node.operand, env)  # type: ignore[attr-defined]
    if isinstance(node, Add):
        return value + node.constant
    if isinstance(node, FloorDiv):
        return value // node.divisor
    if isinstance(node, Mod):
        return value % node.divisor
    if isinstance(node, Compare):
        return value >= node.constant if node.op == ">=" else value <= node.constant
    if isinstance(node, AsFloat):
        return np.asarray(value).astype(np.float64) if isinstance(value, np.ndarray) else float(value)
    raise TypeError(f"unknown expression node {type(node).__name__}")


def to_column(node: Expr, inputs: Mapping[str, Column]) -> Column:
    """The Spark Column computing `node` from the given input columns (integer typed)."""
    from pyspark.sql import functions as F

    if isinstance(node, Input):
        return inputs[node.name]
    value = to_column(node.operand, inputs)  # type: ignore[attr-defined]
    if isinstance(node, Add):
        return value + F.lit(node.constant)
    if isinstance(node, Mod):
        return F.pmod(value, F.lit(node.divisor))
    if isinstance(node, FloorDiv):
        divisor = F.lit(node.divisor)
        # `div` truncates toward zero; on a multiple of the divisor that is the floor.
        return F.call_function("div", value - F.pmod(value, divisor), divisor)
    if isinstance(node, Compare):
        return value >= F.lit(node.constant) if node.op == ">=" else value <= F.lit(node.constant)
    if isinstance(node, AsFloat):
        return value.cast("double")
    raise TypeError(f"unknown expression node {type(node).__name__}")


def _constant(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expression constants are ints, got {value!r}")
    return value


def _positive(value: Any) -> int:
    if _constant(value) <= 0:
        raise ValueError(f"floor division and modulo take a positive constant, got {value}")
    return value
