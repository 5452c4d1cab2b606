"""`cardscore demo`: the whole pipeline end to end on embedded defaults, with a summary.

The steps live in `cardscore.demo` (tested library code); this module shows progress and
prints the results.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cardscore.cli.app import EXIT_FAILED, EXIT_USAGE, app, console, phase_bars, settings_of

DEMO_DAYS = 75  # "a few months": the handbook's population over 2018-04-01..06-14
FULL_DAYS = 183  # the handbook's world


class Steps:
    """Numbered steps with a ✓ line and a timing each (and what the summary needs)."""

    def __init__(self, total: int) -> None:
        self.total, self.number, self.rows = total, 0, []
        self.model: Any = None
        self.alerts: list[dict] = []

    @contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        self.number += 1
        console.rule(f"[bold]{self.number}/{self.total} {title}")
        started = time.perf_counter()
        outcome: list[str] = []
        yield outcome
        seconds = time.perf_counter() - started
        self.rows.append((title, "; ".join(outcome), seconds))
        console.print(f"[green]✓[/green] {title}: {'; '.join(outcome)} [dim]({seconds:.1f}s)[/dim]")


def _metrics_table(model: Any) -> Table:
    from cardscore.model.card import HANDBOOK_TEST_RESULTS

    table = Table(title="test-week metrics beside the Fraud Detection Handbook (chapter 3.4)",
                  caption="the handbook's protocol; --full also uses its world and test week "
                  "(2018-08-08..14), a shorter world its last week whose labels are all in")
    for column in ("model", "AUC ROC", "average precision", "card precision@100"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row in HANDBOOK_TEST_RESULTS.items():
        table.add_row(f"handbook {name}", *(f"{row[m]:.3f}" for m in row))
    table.add_row(f"[bold]cardscore XGBoost v{model.version}[/bold]",
                  *(f"[bold]{model.test[m]:.3f}[/bold]" for m in ("auc_roc", "average_precision", "card_precision_at_k")))
    return table


def _fmt(value: float, unit: str = "") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.0f}{unit}"


@app.command("demo")
def demo(
    ctx: typer.Context,
    full: bool = typer.Option(False, "--full", help=f"the handbook's {FULL_DAYS} days instead of {DEMO_DAYS}"),
    days: int | None = typer.Option(None, "--days", min=1, help="simulated days (overrides --full)"),
    rate: float = typer.Option(1000.0, "--rate", help="replay rate of the streamed day, messages/s (0: unpaced)"),
    keep: bool = typer.Option(False, "--keep", help="keep the previous demo workspace (default: reset it)"),
) -> None:
    """Run the pipeline end to end on embedded defaults and print a summary.

    Simulate a world, backfill it (ingest, features), train, gate and promote a model, run
    the nightly pipeline for the last days (ingest, features, materialize, score, monitor),
    stream-score the last day through the embedded Kafka broker while it is replayed, check
    that the night's batch scores equal the stream's, and say where to look. Everything it
    starts is stopped at the end; the workspace is <home>/demo, reset at each run unless --keep.
    """
    from cardscore import demo as steps_lib
    from cardscore.cli.app import CliState
    from cardscore.core.config import ConfigError
    from cardscore.core.engine import stop_spark
    from cardscore.services.broker import EmbeddedBroker

    state = ctx.find_root().obj
    config_path = state.config_path if isinstance(state, CliState) else None
    n_days = days or (FULL_DAYS if full else DEMO_DAYS)
    try:
        workspace = settings_of(ctx).home_path / "demo"
        if workspace.exists() and not keep:
            shutil.rmtree(workspace)
        workspace.mkdir(parents=True, exist_ok=True)
        settings = steps_lib.demo_settings(config_path, workspace, n_days)
        plan = steps_lib.make_plan(settings)
        workspace_config = steps_lib.write_workspace_config(workspace, settings, plan, config_path)
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]demo cannot start:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    from cardscore.core.logs import configure_logging

    # The full structured log goes to a file; the terminal shows progress and warnings only.
    configure_logging(settings.logging.level, settings.logging.format, file=workspace / "demo.log",
                      stderr_level="WARNING")
    console.print(f"cardscore demo: {n_days} simulated days in {workspace} (log: {workspace / 'demo.log'})")
    started = time.perf_counter()
    steps = Steps(total=8)
    broker = EmbeddedBroker(log_file=workspace / "broker.log")
    try:
        _run(settings, plan, steps, broker, config_path, workspace, rate, steps_lib)
        _summary(settings, steps, plan, workspace_config, steps_lib)
    except Exception as exc:
        console.print(f"[red]demo failed:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(EXIT_FAILED) from exc
    finally:
        broker.stop()
        stop_spark()
    console.print(f"\n[bold]demo finished in {time.perf_counter() - started:.0f}s[/bold]; workspace {workspace}")


def _run(settings, plan, steps: Steps, broker, config_path, workspace, rate: float, lib) -> None:
    from cardscore.core.console import RichReporter, records_table
    from cardscore.jobs.nightly.pipeline import NIGHTLY

    with steps.step("simulate a world") as out, phase_bars(transient=True) as progress:
        world = lib.simulate(settings, progress)
        bad = lib.add_bad_landing_file(settings, plan.nightly_days[0])
        out.append(f"{world.transactions:,} transactions over {world.days} days, "
                   f"{world.frauds / world.transactions:.2%} fraud (by scenario {world.frauds_by_scenario}), "
                   f"{world.labels:,} label reports; {bad} re-sent lines with errors on {plan.nightly_days[0]}")

    with steps.step(f"backfill {plan.first}..{plan.backfill_last}") as out, phase_bars(transient=True) as progress:
        backfill = lib.backfill(settings, plan, progress)
        out.append(f"{backfill.silver_transactions:,} silver transactions, {backfill.silver_labels:,} labels, "
                   f"{backfill.snapshot_days} feature snapshot days")

    with steps.step(f"train on {plan.train_start} + {plan.train_days} days, test to {plan.test_last}") as out, \
            phase_bars(transient=True) as progress:
        model = lib.train_and_promote(settings, plan, progress)
        out.append(f"v{model.version}: " + ", ".join(f"{k} {v:.3f}" for k, v in model.test.items()))
        out.append("gate passed, promoted to champion" if model.champion else "gate FAILED: not promoted")
    console.print(_metrics_table(model))
    console.print(model.gate_summary)
    if not model.champion:
        raise RuntimeError("the first model did not pass the promotion gate, so there is no champion "
                           "to score with (the gate's checks are above)")

    def nightly(days, title: str):
        with steps.step(title) as out:
            bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
            with bars:
                results = lib.nightly(settings, days, RichReporter(bars, len(days) * len(NIGHTLY.steps)))
            failed = [r for r in results if r.failed]
            if failed:
                console.print(records_table(NIGHTLY.name, results))
                raise RuntimeError(f"the nightly pipeline failed on {failed[0].day} at {failed[0].failed.stage}: "
                                   f"{failed[0].failed.error}")
            out.append(f"{len(results)} nights, every stage succeeded or had nothing to do")
        return results

    results = nightly(plan.nightly_days[:-1], f"nightly pipeline {plan.nightly_days[0]}..{plan.nightly_days[-2]}")

    with steps.step("start the embedded Kafka broker (Tansu)") as out:
        broker.start()
        settings = lib.demo_settings(config_path, workspace, settings.simulator.n_days,
                                     {"kafka": {"client": {"bootstrap.servers": broker.bootstrap}}})
        out.append(f"listening on {broker.bootstrap}")

    with steps.step(f"stream-score {plan.stream_day} while it is replayed") as out, phase_bars(transient=True) as progress:
        stream = lib.stream_day(settings, plan.stream_day, rate or None, progress)
        out.append(f"{stream.scored:,} scored, {stream.dlq} to the DLQ {stream.dlq_reasons}, "
                   f"{_fmt(stream.events_per_s, ' msg/s')}, latency p50 {_fmt(stream.latency_p50_ms, ' ms')} "
                   f"p99 {_fmt(stream.latency_p99_ms, ' ms')}")

    results += nightly([plan.stream_day], f"nightly pipeline {plan.stream_day} (batch-scores the streamed day)")

    with steps.step("stream == batch") as out:
        skew = lib.stream_equals_batch(settings, stream)
        out.append(f"{skew.compared:,} transactions compared, max |difference| {skew.max_abs_diff:.1e}, "
                   f"{'EQUAL' if skew.equal else 'DIFFERENT'}")
        if not skew.equal:
            raise RuntimeError(f"stream and batch scores differ: {skew}")

    steps.model = model
    steps.alerts = [a for r in results for rec in r.records if rec.stage == "monitor" and rec.outcome
                    for a in rec.outcome.details.get("alerts", [])]


def _summary(settings, steps: Steps, plan, workspace_config, lib) -> None:
    console.rule("[bold]summary")
    table = Table(title="cardscore demo")
    for column in ("step", "result", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for title, outcome, seconds in steps.rows:
        table.add_row(title, outcome, f"{seconds:.1f}")
    console.print(table)
    counts = Table(title="rows per table")
    counts.add_column("table")
    counts.add_column("rows", justify="right")
    for name, rows in lib.table_counts(settings).items():
        counts.add_row(name, f"{rows:,}")
    console.print(counts)
    gates = Table(title="Great Expectations gates")
    for column in ("suite", "passed", "failed"):
        gates.add_column(column, justify="left" if column == "suite" else "right")
    for suite, tally in sorted(lib.gate_tally(settings.home_path / "demo.log").items()):
        gates.add_row(suite, str(tally["passed"]), str(tally["failed"]))
    console.print(gates)
    console.print(_metrics_table(steps.model))
    if steps.alerts:
        console.print(f"[yellow]monitoring raised {len(steps.alerts)} alert(s)[/yellow]: see the report below")
    looks = Table(title="where to look", show_header=False)
    looks.add_column("what", no_wrap=True)
    looks.add_column("where", overflow="fold")
    for name, where in lib.where_to_look(settings, workspace_config, plan.stream_day).items():
        looks.add_row(name, where)
    console.print(looks)
