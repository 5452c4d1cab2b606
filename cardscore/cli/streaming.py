"""CLI commands of the streaming area (registered on import by cardscore.cli):
`cardscore stream` (run a stream-scorer process) and `cardscore dlq show|replay`."""

from __future__ import annotations

import typer
from rich.table import Table

from cardscore.cli.app import EXIT_FAILED, EXIT_USAGE, app, console, settings_of

dlq_app = typer.Typer(help="The stream scorer's dead-letter queue: inspect it, replay it after a fix.",
                      no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@app.command("stream")
def stream(
    ctx: typer.Context,
    group_id: str | None = typer.Option(None, "--group-id", help="consumer group (default streaming.group_id)"),
    instance_id: str | None = typer.Option(
        None, "--instance-id",
        help="this process's stable name: its static group membership (group.instance.id: a "
        "restart under the same name resumes at once), logs, DLQ headers and transactional.id "
        "(default <host>-<pid>, a dynamic member)",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="messages per micro-batch"),
    batch_wait_ms: int | None = typer.Option(None, "--batch-wait-ms", min=1, help="longest wait to fill a batch"),
    delivery: str | None = typer.Option(
        None, "--delivery", help="at_least_once (default) or exactly_once (needs a real Kafka cluster)"
    ),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=0, help="Prometheus /metrics port (0: off)"),
    model_poll_seconds: float | None = typer.Option(None, "--model-poll-seconds", min=0,
                                                    help="registry alias poll interval"),
    idle_exit: float | None = typer.Option(None, "--idle-exit", min=0,
                                           help="stop (exit 0) after this many seconds without messages"),
) -> None:
    """Score the transactions topic continuously: Feast online features, the champion model.

    Valid messages are scored (one Feast lookup and one model call per micro-batch) and the
    scores produced to the scores topic, keyed by transaction id; invalid ones go to the DLQ
    with their original bytes and the reason. Offsets are committed only after the broker
    acknowledged the batch's output (at-least-once). Run several processes with the same group
    to share the partitions. When the registry's champion alias moves, the new version takes
    over between two batches. SIGTERM or Ctrl-C finishes the batch in hand, commits and exits 0.

    Also runnable as `python -m cardscore.streaming`.
    """
    from cardscore.streaming.service import InvalidOptions, RunOptions, run_scorer

    settings = settings_of(ctx)
    if delivery not in (None, "at_least_once", "exactly_once"):
        raise typer.BadParameter("--delivery must be at_least_once or exactly_once")
    options = RunOptions(
        group_id=group_id, instance_id=instance_id, batch_max_messages=batch_size,
        batch_max_wait_ms=batch_wait_ms, delivery=delivery, metrics_port=metrics_port,
        model_poll_seconds=model_poll_seconds, idle_exit_seconds=idle_exit,
    )
    try:
        if console.is_terminal:
            code = _run_with_status(settings, options)
        else:
            code = run_scorer(settings, options)
    except InvalidOptions as exc:  # only the options' validation, never an error while scoring
        console.print(f"[red]invalid option:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    raise typer.Exit(code)


def _run_with_status(settings, options) -> int:
    """Run with a live status line (counts, rate, model version) for a person watching."""
    import time
    from collections import Counter

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cardscore.streaming.service import run_scorer

    counts: Counter[str] = Counter()
    started = time.monotonic()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as bars:
        task = bars.add_task("waiting for a model and partitions...", total=None)

        def on_batch(report) -> None:
            counts.update(messages=report.messages, scored=report.scored, dlq=sum(report.dlq.values()),
                          retries=int(report.retried is not None))
            elapsed = max(time.monotonic() - started, 1e-3)
            bars.update(task, description=(
                f"scored {counts['scored']:,} · DLQ {counts['dlq']:,} · retries {counts['retries']:,} · "
                f"model v{report.model_version} · {counts['messages'] / elapsed:,.0f} msg/s"
            ))

        return run_scorer(settings, options, on_batch=on_batch)


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    latest: int = typer.Option(10, "--latest", min=0, help="list this many of the newest records"),
) -> None:
    """Count the DLQ's records by reason and list the newest ones (metadata only, no payloads)."""
    from cardscore.streaming.dlq_replay import summarize

    settings = settings_of(ctx)
    try:
        summary = summarize(settings, latest=latest)
    except (ValueError, TimeoutError, RuntimeError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    table = Table(title=f"{settings.kafka.topics.dlq}: {summary.total:,} records")
    table.add_column("reason")
    table.add_column("records", justify="right")
    for reason, count in summary.by_reason.most_common():
        table.add_row(reason, f"{count:,}")
    console.print(table)
    if summary.latest:
        newest = Table(title="newest")
        for column in ("at", "reason", "source", "bytes", "detail"):
            newest.add_column(column)
        for row in summary.latest:
            newest.add_row(*(row.get(c) or "" for c in ("at", "reason", "source", "bytes", "detail")))
        console.print(newest)


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    reason: list[str] = typer.Option(None, "--reason", help="replay only this reason (repeatable)"),
    group: str = typer.Option("cardscore-dlq-replay", "--group",
                              help="consumer group that remembers what was replayed"),
    max_replays: int = typer.Option(3, "--max-replays", min=1,
                                    help="skip records already replayed this many times"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would be replayed; change nothing"),
) -> None:
    """Send DLQ records back to their source topic, byte for byte, after a fix.

    Each record's original key, value and headers are produced again (the dlq.* headers
    removed), so the scorer validates it anew: records the fix made valid get scored, the rest
    return to the DLQ. A rerun continues where the last one stopped (--group).
    """
    from rich.progress import BarColumn, Progress, TextColumn

    from cardscore.streaming.dlq_replay import replay

    settings = settings_of(ctx)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}"),
                      console=console, disable=not console.is_terminal) as bars:
            task = bars.add_task("replayed", total=None)
            report = replay(settings, set(reason) if reason else None, group=group,
                            max_replays=max_replays, dry_run=dry_run,
                            progress=lambda n: bars.advance(task, n))
    except (ValueError, TimeoutError, RuntimeError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {sum(report.replayed.values()):,} records {dict(report.replayed)}; "
                  f"skipped {sum(report.skipped.values()):,} {dict(report.skipped)}")
    if report.truncated:
        console.print(f"not replayable (cut to fit the DLQ; the originals are at their dlq.source.* "
                      f"offsets): {sum(report.truncated.values()):,} {dict(report.truncated)}")


@app.command("fresh-stream")
def fresh_stream(
    ctx: typer.Context,
    step: str = typer.Argument(..., help="card (transactions + labels topics) or terminal (the repartition topic)"),
    instance_id: str | None = typer.Option(None, "--instance-id", help="this process's name in logs (client.id)"),
    idle_exit: float | None = typer.Option(None, "--idle-exit", min=0,
                                           help="stop (exit 0) after this many seconds without messages"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=0,
                                            help="Prometheus /metrics port (default fresh_stream.metrics_port; 0: off)"),
) -> None:
    """Keep the fresh features' online state current: one step of the streaming pipeline.

    `card` consumes the transactions and labels topics (co-partitioned by card), keeps each
    card's events, forwards transactions and their verdicts re-keyed by terminal; `terminal`
    consumes those. Both write the events of the cards / terminals they changed to the Feast
    online store (push sources), from which the scorers finish the features at each
    transaction's time. On start each loads its partitions' last 30 days from the lake
    (silver) and re-reads its partitions, so a restart (even after SIGKILL) rebuilds the same
    state. Run several processes per step to share the partitions. SIGTERM or Ctrl-C
    finishes the batch in hand and exits 0.
    """
    from cardscore.streaming.fresh_pipeline import run_fresh_step

    if step not in ("card", "terminal"):
        raise typer.BadParameter("STEP must be card or terminal")
    settings = settings_of(ctx)
    report = run_fresh_step(settings, step, instance_id=instance_id, idle_exit_seconds=idle_exit,  # type: ignore[arg-type]
                            metrics_port=metrics_port)
    console.print(f"{step} step: {report.messages} messages, {report.forwards} forwarded, "
                  f"{report.rows_written} store rows written, {sum(report.rejected.values())} rejected")
