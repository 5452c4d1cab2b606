"""The `--classic` side of `cardscore engine start|stop|status` (a local JVM Spark standalone
cluster with a Spark Connect server, `cardscore.services.spark_cluster`) and `cardscore engine
jars`. `cardscore.cli.services` declares the options and calls these."""

from __future__ import annotations

import shlex

import typer

from cardscore.cli.app import EXIT_FAILED, console, settings_of
from cardscore.services.spark_cluster import (
    ClassicCluster,
    ClusterError,
    ClusterOptions,
    delta_jars,
)


def start(ctx: typer.Context, options: ClusterOptions, timeout: float) -> None:
    cluster = ClassicCluster(settings_of(ctx), options)
    try:
        state = cluster.start(timeout=timeout)
    except ClusterError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    console.print(cluster.describe(), soft_wrap=True)
    console.print("jobs on the cluster: spark-submit " + shlex.join(cluster.submit_args(state)) + " jobs/<job>.py",
                  soft_wrap=True)
    if state.connect_url:
        console.print(f"jobs through Spark Connect: SPARK_REMOTE={state.connect_url} spark-submit jobs/<job>.py",
                      soft_wrap=True)
    # stdout, for scripts: the two addresses
    print(state.master_url)
    if state.connect_url:
        print(state.connect_url)


def stop(ctx: typer.Context) -> None:
    stopped = ClassicCluster(settings_of(ctx)).stop()
    console.print("classic cluster: stopped" if stopped else "classic cluster: was not running")


def status(ctx: typer.Context) -> None:
    cluster = ClassicCluster(settings_of(ctx))
    console.print(cluster.describe(), soft_wrap=True)
    if not cluster.running():
        raise typer.Exit(EXIT_FAILED)


def jars() -> None:
    """Print the Delta jars for JVM Spark, comma-separated, for spark-submit's --jars."""
    try:
        found = delta_jars()
    except ClusterError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    print(",".join(str(j) for j in found))
