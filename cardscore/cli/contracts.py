"""`cardscore contracts check|snapshot|export`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cardscore.cli.app import EXIT_FAILED, app, console

contracts_app = typer.Typer(help="Data contracts: compatibility checks and exports.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")


@contracts_app.command("check")
def contracts_check() -> None:
    """Check every contract against its committed snapshot (breaking changes fail)."""
    from cardscore.schemas import ALL_CONTRACTS
    from cardscore.schemas.compat import BreakingChangeError, check_contract

    failed = False
    for contract in ALL_CONTRACTS.values():
        try:
            check_contract(contract)
            console.print(f"{contract.name} v{contract.version}: ok")
        except BreakingChangeError as exc:
            failed = True
            console.print(f"[red]{exc}[/red]")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@contracts_app.command("snapshot")
def contracts_snapshot() -> None:
    """Record snapshots of contracts whose new version passed the compatibility check."""
    from cardscore.schemas import ALL_CONTRACTS
    from cardscore.schemas.compat import (
        BreakingChangeError,
        check_contract,
        latest_snapshot,
        write_snapshot,
    )

    for contract in ALL_CONTRACTS.values():
        previous = latest_snapshot(contract.name)
        if previous is not None:
            try:
                check_contract(contract)
            except BreakingChangeError as exc:
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(EXIT_FAILED) from None
            if previous["version"] == contract.version:
                continue
        console.print(f"wrote {write_snapshot(contract)}")


@contracts_app.command("export")
def contracts_export(out: Path = typer.Option(Path("schemas/json"), help="output folder")) -> None:
    """Write each contract's JSON Schema (for Kafka producers and schema registries)."""
    from cardscore.schemas import ALL_CONTRACTS

    out.mkdir(parents=True, exist_ok=True)
    for contract in ALL_CONTRACTS.values():
        path = out / f"{contract.name}.v{contract.version}.schema.json"
        path.write_text(json.dumps(contract.json_schema(), indent=2) + "\n")
        console.print(f"wrote {path}")
