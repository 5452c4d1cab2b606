"""`cardscore simulate` (generate the handbook's world into the landing zone) and
`cardscore replay` (produce one landing day to the transactions topic)."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cardscore.cli.app import (
    EXIT_FAILED,
    EXIT_USAGE,
    app,
    console,
    parse_day,
    phase_bars,
    settings_of,
)
from cardscore.core.config.settings import to_uri


@app.command("simulate")
def simulate(
    ctx: typer.Context,
    customers: int | None = typer.Option(
        None, "--customers", help="number of customers (default: simulator.n_customers, 5000)"
    ),
    terminals: int | None = typer.Option(
        None, "--terminals", help="number of terminals (default: simulator.n_terminals, 10000)"
    ),
    days: int | None = typer.Option(
        None, "--days", help="number of days (default: simulator.n_days, 183)"
    ),
    start: str | None = typer.Option(
        None, "--start", help="first day, YYYY-MM-DD (default: simulator.start_date, 2018-04-01)"
    ),
    radius: float | None = typer.Option(
        None,
        "--radius",
        help="a customer uses terminals closer than this (default: simulator.radius, 5)",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="random seed (default: simulator.seed, 0)"
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        help="landing URI (file://, s3://, ...) or folder (default: the settings' landing root)",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace a world simulated with other parameters"
    ),
) -> None:
    """Simulate card transactions and frauds (Fraud Detection Handbook, chapter 3) into the landing zone.

    Writes per-day JSON-line transaction files, a delayed fraud-label feed by arrival day, customer and terminal reference Parquet, and, for analysis only, `_simulation/` (manifest and ground truth).

    The same parameters give byte-identical files; a folder holding a world with other parameters is refused unless --overwrite.
    """
    from pydantic import ValidationError

    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.simulator import (
        LandingConflictError,
        check_landing,
        generate_world,
        write_landing,
    )

    settings = settings_of(ctx)
    overrides = {
        "n_customers": customers,
        "n_terminals": terminals,
        "n_days": days,
        "start_date": parse_day(start) if start else None,
        "radius": radius,
        "seed": seed,
    }
    try:
        params = SimulatorSettings.model_validate(
            {
                **settings.simulator.model_dump(),
                **{k: v for k, v in overrides.items() if v is not None},
            }
        )
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "parameters"
            console.print(f"[red]invalid simulator setting[/red] {where}: {err['msg']}")
        raise typer.Exit(EXIT_USAGE) from None
    landing = to_uri(out) or settings.landing_root
    try:
        check_landing(landing, params, overwrite)  # fail before a minute of work, not after
    except LandingConflictError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None

    console.print(f"simulating into {landing}")
    started = time.perf_counter()
    with phase_bars() as progress:
        world = generate_world(params, progress=progress)
        try:
            manifest = write_landing(world, landing, overwrite=overwrite, progress=progress)
        except LandingConflictError as exc:  # another run wrote there in the meantime
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(EXIT_FAILED) from None
    console.print(_summary(manifest, time.perf_counter() - started))


def _summary(manifest: dict[str, Any], seconds: float) -> Table:
    totals = manifest["totals"]
    table = Table(title="simulated world", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("transactions", f"{totals['transactions']:,}")
    table.add_row("frauds", f"{totals['frauds']:,}")
    table.add_row("fraud rate", f"{totals['fraud_rate']:.3%}")
    names = {"1": "amount > threshold", "2": "compromised terminal", "3": "compromised customer"}
    for scenario, count in manifest["frauds_per_scenario"].items():
        table.add_row(f"  scenario {scenario} ({names.get(scenario, '?')})", f"{count:,}")
    table.add_row("label events", f"{totals['labels']:,}")
    table.add_row("transaction files", str(totals["transaction_files"]))
    table.add_row("label files", str(totals["label_files"]))
    timing = manifest["timing"]
    table.add_row("generation seconds", f"{timing['generation_seconds']:.1f}")
    table.add_row("write seconds", f"{timing['write_seconds']:.1f}")
    table.add_row("total seconds", f"{seconds:.1f}")
    return table


@app.command("replay")
def replay(
    ctx: typer.Context,
    day: str = typer.Option(..., "--date", help="the landing day to replay, YYYY-MM-DD"),
    rate: float | None = typer.Option(
        None, "--rate", min=0.001, help="events per second (default: as fast as possible)"
    ),
) -> None:
    """Produce one landing day to Kafka in time order: its transactions to the transactions topic
    and the fraud label reports that arrived that day to the labels topic, interleaved by time.

    Each message's value is the landing line byte for byte, its key the card (a label's: the card of
    its transaction); the producer is idempotent (acks=all). A rerun appends the day again.

    With the embedded broker (kafka.mode: embedded), start it first with `cardscore broker start`.
    """
    from cardscore.services.broker import broker_ready
    from cardscore.simulator import landing_file, read_landing_day
    from cardscore.simulator.kafka import DeliveryError, read_label_day, replay_day

    settings = settings_of(ctx)
    the_day = parse_day(day)
    try:
        n_transactions = len(read_landing_day(settings.landing_root, the_day))
    except FileNotFoundError:
        console.print(
            f"[red]no landing file for {the_day}[/red] ({landing_file('transactions', the_day)} under "
            f"{settings.landing_root}); run `cardscore simulate` first"
        )
        raise typer.Exit(EXIT_FAILED) from None
    # Loopback answers at once; a remote cluster (TLS, SASL) may need a few seconds.
    embedded = settings.kafka.mode == "embedded"
    if not broker_ready(settings.kafka_conf(), timeout=1.5 if embedded else 10.0):
        if embedded:
            console.print(
                f"[red]the embedded broker is not running[/red] on {settings.kafka_bootstrap}; "
                "start it with `cardscore broker start`"
            )
        else:
            console.print(
                f"[red]cannot reach the Kafka cluster[/red] at {settings.kafka_bootstrap}"
            )
        raise typer.Exit(EXIT_FAILED)

    n_labels = len(read_label_day(settings.landing_root, the_day))
    total = n_transactions + n_labels
    topic, label_topic = settings.kafka.topics.transactions, settings.kafka.topics.labels
    console.print(
        f"replaying {n_transactions:,} transactions to {topic} and {n_labels:,} label reports to "
        f"{label_topic} of {the_day}" + (f" at {rate:g}/s" if rate else "")
    )
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bars:
        task = bars.add_task("delivered", total=total)
        try:
            report = replay_day(
                settings, the_day, rate=rate, progress=lambda n: bars.advance(task, n)
            )
        except DeliveryError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(EXIT_FAILED) from None
    seconds = time.perf_counter() - started
    count = report.total
    unkeyed = (
        f" ({report.unkeyed_labels:,} without a key: their transaction is not in the landing "
        "files of the last 30 days)" if report.unkeyed_labels else ""
    )
    console.print(
        f"{report.transactions:,} events to {topic} and {report.labels:,} label reports to "
        f"{label_topic}{unkeyed} in {seconds:.2f}s "
        f"({count / seconds if seconds else 0:,.0f} events/s)"
    )
