"""The long-running engine for `cardscore engine start`: a Sail Spark Connect server.

Jobs reach it like any Spark Connect cluster: `SPARK_REMOTE=sc://127.0.0.1:15002 spark-submit
jobs/ingest/main.py ...`. It runs this venv's Python, so Python UDFs find xgboost and pandas.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

from cardscore.core.config import Settings
from cardscore.services.process import ManagedService

MARKER = "cardscore.services.engine_server"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def engine_service(settings: Settings) -> ManagedService:
    host, port = settings.engine.host, settings.engine.server_port
    return ManagedService(
        name="engine",
        argv=[sys.executable, "-m", MARKER, "--host", host, "--port", str(port)],
        run_dir=settings.run_dir,
        address=f"sc://{host}:{port}",
        ready=lambda: port_open(host, port),
        marker=MARKER,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a Sail Spark Connect server until SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=15002)
    args = parser.parse_args(argv)

    from pysail.spark import SparkConnectServer

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = SparkConnectServer(args.host, args.port)
    server.start()
    host, port = server.listening_address
    print(f"engine listening on sc://{host}:{port}", flush=True)
    stop.wait()
    server.stop()
    print("engine stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
