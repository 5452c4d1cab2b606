"""`cardscore demo`: the pipeline end to end on embedded defaults (grows as stages land)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import typer
from rich.table import Table

from cardscore.cli.app import EXIT_FAILED, app, console, settings_of


@dataclass
class DemoReport:
    rows: list[tuple[str, str, float]] = field(default_factory=list)

    def step(self, name: str, work: Callable[[], str]) -> None:
        started = time.perf_counter()
        with console.status(f"[bold]{name}[/bold] ..."):
            outcome = work()
        seconds = time.perf_counter() - started
        self.rows.append((name, outcome, seconds))
        console.print(f"[green]✓[/green] {name}: {outcome} [dim]({seconds:.1f}s)[/dim]")

    def table(self) -> Table:
        table = Table(title="cardscore demo")
        table.add_column("step")
        table.add_column("result")
        table.add_column("seconds", justify="right")
        for name, outcome, seconds in self.rows:
            table.add_row(name, outcome, f"{seconds:.1f}")
        return table


@app.command("demo")
def demo(
    ctx: typer.Context,
    keep: bool = typer.Option(False, help="keep the previous demo workspace instead of resetting it"),
) -> None:
    """Run the pipeline end to end on embedded defaults and print a summary.

    Everything it starts (engine, broker) is stopped at the end; its workspace is
    <home>/demo and is reset at the start of each run unless --keep is given.
    """
    from cardscore.config import load_settings

    base = settings_of(ctx)
    workspace = base.home_path / "demo"
    if workspace.exists() and not keep:
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        ctx.find_root().obj.config_path, overrides={"home": str(workspace)}
    )
    report = DemoReport()
    started = time.perf_counter()
    try:
        _run(settings, report)
    except Exception as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from exc
    finally:
        from cardscore.engine import stop_spark

        stop_spark()
    console.print(report.table())
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s; workspace {workspace}")


def _run(settings, report: DemoReport) -> None:
    from confluent_kafka import Consumer, Producer

    from cardscore.engine import get_spark
    from cardscore.services.broker import EmbeddedBroker, create_topics
    from cardscore.tables import Lake

    holder: dict[str, object] = {}

    def start_engine() -> str:
        spark = get_spark(settings)
        holder["spark"] = spark
        return f"Sail (Spark Connect) session, Spark API {spark.version}"

    report.step("start engine", start_engine)

    def delta_round_trip() -> str:
        spark = holder["spark"]
        lake = Lake(spark, settings)  # type: ignore[arg-type]
        df = spark.range(1000).selectExpr("id", "id % 7 AS bucket")  # type: ignore[attr-defined]
        lake.overwrite(df, "ops.demo_smoke", partition_by=["bucket"])
        lake.append(df.limit(10), "ops.demo_smoke", partition_by=["bucket"])
        rows = lake.read("ops.demo_smoke").count()
        return f"{rows} rows at version {lake.version('ops.demo_smoke')} in {lake.uri('ops.demo_smoke')}"

    report.step("Delta write/read", delta_round_trip)

    broker = EmbeddedBroker(log_file=settings.home_path / "broker.log")
    report.step("start broker", lambda: f"Tansu at {broker.start().bootstrap}")
    try:

        def kafka_round_trip() -> str:
            topic = settings.kafka.topics.transactions
            create_topics(broker.conf, {topic: settings.kafka.partitions})
            producer = Producer({**broker.conf, "enable.idempotence": "true"})
            for i in range(100):
                producer.produce(topic, key=str(i).encode(), value=f'{{"n": {i}}}'.encode())
            if producer.flush(15) != 0:
                raise RuntimeError("messages were not delivered")
            consumer = Consumer({**broker.conf, "group.id": "demo", "auto.offset.reset": "earliest",
                                 "session.timeout.ms": "6000", "heartbeat.interval.ms": "500"})
            consumer.subscribe([topic])
            got, deadline = 0, time.monotonic() + 30
            while got < 100 and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and not msg.error():
                    got += 1
            consumer.close()
            if got != 100:
                raise RuntimeError(f"consumed {got} of 100 messages")
            return f"100 messages produced and consumed on {topic}"

        report.step("Kafka round trip", kafka_round_trip)
    finally:
        broker.stop()
