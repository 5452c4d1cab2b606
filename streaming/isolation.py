"""Transient or permanent: which failures are retried and which message is set aside.

Scoring a batch of valid transactions (online lookup, model, score messages) can fail for two
kinds of reasons, and they need opposite treatments:

* a **dependency** failed (online store, registry, network): every message would fail the
  same way, and retrying later is the cure. The whole batch is retried; nothing is
  dead-lettered.
* the **data** of one message makes the code raise (a value the contract allows but a library
  cannot take): retrying never helps, and that message must not block its batch-mates. It is
  isolated and dead-lettered with the error (`unprocessable`); the rest is scored.

`isolate(n, attempt, probe)` tells them apart:

1. `attempt(all rows)`: the normal case, one call, done.
2. On an error whose type says "dependency" (`dependency_error`: OS and network errors,
   SQLite, Redis, gRPC, ...), raise `DependencyFailure` at once.
3. Otherwise run `probe()`, a known-good synthetic record through the same path: if it fails
   too, the dependency is broken for everyone (`DependencyFailure`).
4. Otherwise split the rows in halves and attempt each, recursively. A single row that fails,
   then fails again right after the probe passed, is poison: it is returned with its error.
   A dependency error at any point aborts with `DependencyFailure` (the batch is retried
   whole, nothing half-delivered).

Cost: one call per batch when nothing fails; with k poison rows among n, about 2k*log2(n)
calls and one probe per poison row. The module knows nothing about Kafka or Feast.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

# Modules whose exceptions are failures of a remote or stored dependency, not of the data.
_DEPENDENCY_MODULES = ("redis", "grpc", "psycopg", "psycopg2", "sqlalchemy", "urllib3", "requests", "botocore")


class DependencyFailure(RuntimeError):
    """A dependency failed for the whole batch: retry it later, reject nothing."""


@dataclass
class Isolated(Generic[T]):
    """What scoring the rows gave: the results of the row groups that succeeded (together
    every row but the poison ones, in row order), and each poison row with its error."""

    parts: list[tuple[np.ndarray, T]] = field(default_factory=list)
    poison: list[tuple[int, Exception]] = field(default_factory=list)
    attempts: int = 0


def dependency_error(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is a failure of a dependency, by its type."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError | sqlite3.Error):  # OSError: connection, timeout, file
            return True
        if type(current).__module__.split(".")[0] in _DEPENDENCY_MODULES:
            return True
        current = current.__cause__ or current.__context__
    return False


def isolate(
    n: int,
    attempt: Callable[[np.ndarray], T],
    probe: Callable[[], object],
    is_dependency_error: Callable[[BaseException], bool] = dependency_error,
) -> Isolated[T]:
    """Run `attempt` over rows 0..n-1, isolating rows whose data makes it raise (see above).

    Raises `DependencyFailure` when the failure is a dependency's (retry the batch).

    The halving runs on an explicit stack, not a recursive closure: a function that refers to
    itself is a reference cycle, and one per batch kept every batch's messages alive until the
    garbage collector's next pass (measured: 30-66 ms pauses every ~1 s at 2,000 events/s)."""
    out: Isolated[T] = Isolated()
    failure = _Failure()
    rows = np.arange(n)
    if n == 0 or _run(out, attempt, rows, failure, is_dependency_error):
        return out
    _healthy(probe, failure)
    if n == 1:
        if not _run(out, attempt, rows, failure, is_dependency_error):
            out.poison.append((0, failure.last))
        return out
    pending = _halves(rows)
    while pending:  # depth first, the lower half first
        selected = pending.pop()
        if _run(out, attempt, selected, failure, is_dependency_error):
            continue
        if len(selected) > 1:
            pending += _halves(selected)
            continue
        _healthy(probe, failure)
        if not _run(out, attempt, selected, failure, is_dependency_error):
            # Fails again with the dependency known to work: poison.
            out.poison.append((int(selected[0]), failure.last))
    out.parts.sort(key=lambda part: int(part[0][0]))
    return out


def _halves(rows: np.ndarray) -> list[np.ndarray]:
    """The two halves of `rows`, the lower one last (popped first)."""
    middle = len(rows) // 2
    return [rows[middle:], rows[:middle]]


class _Failure:
    """The latest data error (its type names the batch's failure if the probe fails too)."""

    last: Exception = RuntimeError("no attempt yet")


def _run(out: Isolated[T], attempt: Callable[[np.ndarray], T], selected: np.ndarray, failure: _Failure,
         is_dependency_error: Callable[[BaseException], bool]) -> bool:
    out.attempts += 1
    try:
        out.parts.append((selected, attempt(selected)))
        return True
    except Exception as exc:
        if is_dependency_error(exc):
            raise DependencyFailure(f"{type(exc).__name__}: {exc}") from exc
        failure.last = exc
        return False


def _healthy(probe: Callable[[], object], failure: _Failure) -> None:
    try:
        probe()
    except Exception as exc:
        # The batch's own error text may quote its data: only its type goes into the message.
        raise DependencyFailure(
            f"a known-good record fails too ({type(exc).__name__}: {exc}); "
            f"the batch failed with {type(failure.last).__name__}"
        ) from exc
