"""The `cardscore` Typer application, its `run` sub-command group and shared CLI helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import typer
from rich.console import Console

from cardscore.core.config import ConfigError, Settings, load_settings
from cardscore.core.logs import configure_logging
from cardscore.core.stage import EXIT_FAILED, EXIT_OK, EXIT_USAGE, JobContext

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "app", "console", "days_of", "job_context", "parse_day",
           "run_app", "settings_of"]

console = Console(stderr=True)

app = typer.Typer(
    name="cardscore",
    help="Card-fraud scoring pipeline: batch and stream scorers over one feature store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
run_app = typer.Typer(help="Run one pipeline stage for a day or a range of days.", no_args_is_help=True)
app.add_typer(run_app, name="run")


@dataclass
class CliState:
    config_path: Path | None = None
    log_level: str | None = None
    log_format: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                console.print(f"[red]configuration error:[/red] {exc}")
                raise typer.Exit(EXIT_USAGE) from None
            # The root --log-level/--log-format win over the file, for every command.
            logging = self._settings.logging.model_copy(update={
                k: v for k, v in (("level", self.log_level), ("format", self.log_format)) if v
            })
            self._settings = self._settings.model_copy(update={"logging": logging})
            configure_logging(logging.level, logging.format)
        return self._settings


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", envvar="CARDSCORE_CONFIG", help="YAML settings file (default ./cardscore.yaml)"
    ),
    log_level: str | None = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING, ERROR"),
    log_format: str | None = typer.Option(None, "--log-format", help="auto, json or console"),
) -> None:
    ctx.obj = CliState(config, log_level, log_format)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings for this invocation (loaded once; config errors exit with code 2)."""
    state = ctx.find_root().obj
    if not isinstance(state, CliState):  # invoked without the root callback (tests)
        state = CliState()
        ctx.find_root().obj = state
    return state.settings()


def parse_day(value: str) -> date:
    """A --date option's value (YYYY-MM-DD, today, yesterday), as a usage error when wrong."""
    from cardscore.core.days import parse_day as parse

    try:
        return parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def days_of(day: str | None, start: str | None, end: str | None) -> list[date]:
    """Days from --date D, or --from A --to B (inclusive), as usage errors when wrong."""
    from cardscore.core.days import resolve_days

    try:
        return resolve_days(day, start, end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@contextmanager
def job_context(ctx: typer.Context, remote: str | None = None) -> Iterator[JobContext]:
    """The engine and lake for a command that reads tables (not a stage: those go through the
    runner). Engine errors exit 2, a stage's failure (missing input) exits 1."""
    from cardscore.core.engine import EngineError
    from cardscore.core.errors import StageFailed
    from cardscore.core.stage import open_context

    try:
        with open_context(settings_of(ctx), remote) as job:
            yield job
    except EngineError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    except StageFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(exc.exit_code) from None


@contextmanager
def phase_bars(transient: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """`cardscore.core.console.phase_bars` on the CLI's console (stderr)."""
    from cardscore.core.console import phase_bars as bars

    with bars(console, transient) as progress:
        yield progress
