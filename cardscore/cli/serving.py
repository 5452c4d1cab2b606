"""CLI command of the online scoring API: `cardscore serve` (registered on import by cardscore.cli)."""

from __future__ import annotations

import typer

from cardscore.cli.app import EXIT_USAGE, app, console, settings_of


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="address to bind (default serving.host)"),
    port: int | None = typer.Option(None, "--port", min=0, max=65535,
                                    help="port (default serving.port; 0: any free port)"),
    reader: str | None = typer.Option(None, "--reader",
                                      help="online feature reader: snapshot, direct or feast "
                                      "(default features.online_reader)"),
    model_poll_seconds: float | None = typer.Option(None, "--model-poll-seconds", min=0,
                                                    help="registry alias poll interval"),
    openapi: bool = typer.Option(False, "--openapi", help="print the OpenAPI document and exit"),
) -> None:
    """Serve fraud scores over HTTP: POST /v1/score with one transaction or a small batch.

    Each transaction is checked against the same contract as ingest and the stream (422 names
    every reason), scored with the champion model on the online features of its day, and
    answered with the stream's score message plus the features that contributed most to it.
    GET /healthz, /readyz (model and features loaded), /metrics, /openapi.json. When the
    registry's champion alias moves, the new version takes over without a restart. SIGTERM or
    Ctrl-C finishes the requests in flight and exits 0.

    Also runnable as `python -m cardscore.serving`.
    """
    from cardscore.serving.server import ServeOptions, run_server

    settings = settings_of(ctx)
    if openapi:
        from cardscore.serving.openapi import openapi_document, openapi_text

        typer.echo(openapi_text(openapi_document(settings.serving.max_batch, settings.serving.top_contributions)),
                   nl=False)
        raise typer.Exit(0)
    if reader not in (None, "snapshot", "direct", "feast"):
        raise typer.BadParameter("--reader must be snapshot, direct or feast")
    options = ServeOptions(host=host, port=port, model_poll_seconds=model_poll_seconds, reader=reader)
    try:
        code = run_server(settings, options)
    except ValueError as exc:
        console.print(f"[red]invalid option:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    raise typer.Exit(code)
