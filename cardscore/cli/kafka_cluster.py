"""`cardscore broker start|stop|status|env --kafka`: the local Apache Kafka cluster.

The commands are declared in `cardscore.cli.services` (next to the embedded broker's); this
module does the work. The cluster lives under <home>/kafka (cardscore.services.kafka_cluster).
"""

from __future__ import annotations

import shlex
import time

import typer

from cardscore.cli.app import EXIT_FAILED, console, settings_of

KAFKA_OPTION_HELP = ("a local Apache Kafka cluster (KRaft, from the jars of `make jars`, data under "
                     "<home>/kafka) instead of the embedded broker")
NODES_OPTION_HELP = ("with --kafka: number of nodes, each broker and controller (default 1, or the "
                     "count the cluster was formatted with); 3 or more: replication factor 3 and "
                     "min.insync.replicas 2")


def _cluster(ctx: typer.Context, nodes: int | None = None):
    from cardscore.services.kafka_cluster import KafkaCluster
    from cardscore.services.process import ServiceError

    try:
        return KafkaCluster.from_settings(settings_of(ctx), nodes, detached=True)
    except ServiceError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None


def start(ctx: typer.Context, nodes: int | None, timeout: float) -> None:
    from cardscore.services.process import ServiceError

    cluster = _cluster(ctx, nodes)
    started = time.perf_counter()
    try:
        cluster.start(timeout=timeout)
    except ServiceError as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    status = cluster.status()
    console.print(f"ready in {time.perf_counter() - started:.1f}s")
    console.print(status.describe(), soft_wrap=True)
    console.print('clients reach it with: eval "$(cardscore broker env --kafka)"')


def stop(ctx: typer.Context) -> None:
    cluster = _cluster(ctx)
    stopped = cluster.stop()
    console.print("kafka: stopped (data kept)" if stopped else "kafka: was not running")


def status(ctx: typer.Context) -> None:
    current = _cluster(ctx).status()
    console.print(current.describe(), soft_wrap=True)
    if not current.running:
        raise typer.Exit(EXIT_FAILED)


def env(ctx: typer.Context) -> None:
    cluster = _cluster(ctx)
    if cluster.layout is None:
        console.print(f"[red]no Kafka cluster under {cluster.root}: run `cardscore broker start --kafka`[/red]")
        raise typer.Exit(EXIT_FAILED)
    for name, value in cluster.env().items():
        typer.echo(f"export {name}={shlex.quote(value)}")
