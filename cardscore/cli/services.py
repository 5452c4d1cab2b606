"""`cardscore engine|broker start|stop|status` and `cardscore topics create|list`."""

from __future__ import annotations

import typer

from cardscore.cli import kafka_cluster as kafka_cmd
from cardscore.cli.app import EXIT_FAILED, app, console, settings_of
from cardscore.cli.kafka_cluster import KAFKA_OPTION_HELP, NODES_OPTION_HELP
from cardscore.services.spark_cluster import QUICK_JVM_OPTIONS

engine_app = typer.Typer(
    help="A long-running engine shared by several jobs: Sail (default), or with --classic a local "
    "JVM Spark standalone cluster and Spark Connect server with Delta.",
    no_args_is_help=True,
)
broker_app = typer.Typer(help="The embedded Kafka-compatible broker (Tansu), or with --kafka a local "
                         "Apache Kafka cluster.", no_args_is_help=True)
topics_app = typer.Typer(help="The project's Kafka topics.", no_args_is_help=True)
app.add_typer(engine_app, name="engine")
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")


def _service(ctx: typer.Context, which: str):
    settings = settings_of(ctx)
    if which == "engine":
        from cardscore.services.engine_server import engine_service

        return engine_service(settings)
    from cardscore.services.broker import broker_service

    return broker_service(settings)


def _start(ctx: typer.Context, which: str, timeout: float) -> None:
    from cardscore.services.process import ServiceError

    try:
        status = _service(ctx, which).start(timeout=timeout)
    except ServiceError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    console.print(status.describe())
    if which == "engine":
        console.print(f"jobs reach it with: SPARK_REMOTE={status.address} spark-submit jobs/<job>.py ...")


def _stop(ctx: typer.Context, which: str) -> None:
    stopped = _service(ctx, which).stop()
    console.print(f"{which}: stopped" if stopped else f"{which}: was not running")


def _status(ctx: typer.Context, which: str) -> None:
    status = _service(ctx, which).status()
    console.print(status.describe())
    if not status.running:
        raise typer.Exit(EXIT_FAILED)


CLASSIC_HELP = "a local JVM Spark standalone cluster (master, workers) and a Spark Connect server with Delta"


@engine_app.command("start")
def engine_start(
    ctx: typer.Context,
    timeout: float | None = typer.Option(None, help="seconds to wait (default 30; 300 with --classic)"),
    classic: bool = typer.Option(False, "--classic", help=CLASSIC_HELP),
    workers: int = typer.Option(2, min=1, help="--classic: worker JVMs (each runs its own executors)"),
    worker_cores: int = typer.Option(2, min=1, help="--classic: task slots per worker"),
    worker_memory: str = typer.Option("2g", help="--classic: memory each worker hands to executors"),
    executor_memory: str = typer.Option("1g", help="--classic: heap of each executor"),
    master_port: int = typer.Option(7077, envvar="CARDSCORE_CLASSIC_MASTER_PORT", help="--classic: master port (0: a free one)"),
    webui_port: int = typer.Option(8080, envvar="CARDSCORE_CLASSIC_WEBUI_PORT", help="--classic: master web UI port (0: a free one)"),
    connect_port: int = typer.Option(15003, envvar="CARDSCORE_CLASSIC_CONNECT_PORT", help="--classic: Spark Connect port (0: a free one)"),
    connect: bool = typer.Option(True, help="--classic: also start the Spark Connect server"),
    connect_driver_memory: str = typer.Option(
        "1g", help="--classic: heap of the Spark Connect server (the driver of every Connect job: "
        "plans, broadcasts, collected results)"),
    jvm_options: str = typer.Option(QUICK_JVM_OPTIONS, help="--classic: JVM flags of every "
                                    "daemon, driver and executor (default: quick JIT for short jobs)"),
) -> None:
    """Start the engine in the background: Sail on engine.host:engine.server_port, or with
    --classic a JVM Spark cluster and Connect server (waits until every worker is ALIVE)."""
    if classic:
        from cardscore.cli import classic_engine
        from cardscore.services.spark_cluster import ClusterOptions

        options = ClusterOptions(workers, worker_cores, worker_memory, executor_memory, master_port,
                                 webui_port, connect_port, connect, jvm_options, connect_driver_memory)
        classic_engine.start(ctx, options, timeout or 300.0)
        return
    _start(ctx, "engine", timeout or 30.0)


@engine_app.command("stop")
def engine_stop(ctx: typer.Context, classic: bool = typer.Option(False, "--classic", help=CLASSIC_HELP)) -> None:
    """Stop the background engine (SIGTERM, then SIGKILL)."""
    if classic:
        from cardscore.cli import classic_engine

        classic_engine.stop(ctx)
        return
    _stop(ctx, "engine")


@engine_app.command("status")
def engine_status(ctx: typer.Context, classic: bool = typer.Option(False, "--classic", help=CLASSIC_HELP)) -> None:
    """Show whether the engine runs (exit code 1 if not)."""
    if classic:
        from cardscore.cli import classic_engine

        classic_engine.status(ctx)
        return
    _status(ctx, "engine")


@engine_app.command("jars")
def engine_jars() -> None:
    """Print the Delta jars for JVM Spark (`make jars`), comma-separated, for spark-submit --jars."""
    from cardscore.cli import classic_engine

    classic_engine.jars()


@broker_app.command("start")
def broker_start(
    ctx: typer.Context,
    timeout: float | None = typer.Option(None, help="seconds to wait (default 20, 180 with --kafka)"),
    kafka: bool = typer.Option(False, "--kafka", help=KAFKA_OPTION_HELP),
    nodes: int | None = typer.Option(None, "--nodes", min=1, help=NODES_OPTION_HELP),
) -> None:
    """Start the embedded broker in the background on kafka.embedded_port; with --kafka, a
    local Apache Kafka cluster (formatted on first start; waits until every broker answers)."""
    if kafka:
        kafka_cmd.start(ctx, nodes, timeout or 180.0)
        return
    if nodes not in (None, 1):
        raise typer.BadParameter("--nodes needs --kafka (the embedded broker is one process)")
    _start(ctx, "broker", timeout or 20.0)


@broker_app.command("stop")
def broker_stop(ctx: typer.Context, kafka: bool = typer.Option(False, "--kafka", help=KAFKA_OPTION_HELP)) -> None:
    """Stop the embedded broker (its in-memory topics are lost); with --kafka, every node of
    the Kafka cluster (SIGTERM, SIGKILL after 30 s; its data stay on disk)."""
    if kafka:
        kafka_cmd.stop(ctx)
        return
    _stop(ctx, "broker")


@broker_app.command("status")
def broker_status(ctx: typer.Context, kafka: bool = typer.Option(False, "--kafka", help=KAFKA_OPTION_HELP)) -> None:
    """Show whether the embedded broker (or with --kafka every Kafka node) runs (exit code 1 if not)."""
    if kafka:
        kafka_cmd.status(ctx)
        return
    _status(ctx, "broker")


@broker_app.command("env")
def broker_env(ctx: typer.Context, kafka: bool = typer.Option(False, "--kafka", help=KAFKA_OPTION_HELP)) -> None:
    """Print `export CARDSCORE__KAFKA__...` lines that point cardscore's clients at the broker:
    `eval "$(cardscore broker env --kafka)"`."""
    if kafka:
        kafka_cmd.env(ctx)
        return
    port = settings_of(ctx).kafka.embedded_port
    typer.echo("export CARDSCORE__KAFKA__MODE=embedded")
    typer.echo(f"export CARDSCORE__KAFKA__EMBEDDED_PORT={port}")


@topics_app.command("create")
def topics_create(ctx: typer.Context) -> None:
    """Create the transactions, scores and DLQ topics (existing ones are left alone)."""
    from cardscore.services.broker import create_topics, project_topics

    settings = settings_of(ctx)
    topics = project_topics(settings)
    created = create_topics(settings.kafka_conf(), topics, settings.kafka.replication_factor)
    for name, parts in topics.items():
        state = "created" if name in created else "exists"
        console.print(f"{name}: {parts} partitions ({state})")


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """List topics on the configured cluster with their partition counts."""
    from confluent_kafka.admin import AdminClient

    settings = settings_of(ctx)
    metadata = AdminClient(settings.kafka_conf()).list_topics(timeout=10)
    for name in sorted(metadata.topics):
        console.print(f"{name}: {len(metadata.topics[name].partitions)} partitions")
