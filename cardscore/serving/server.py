"""Running the scoring API: a uvicorn server on a socket bound before it starts.

Shared by `cardscore serve` and `python -m cardscore.serving`. The socket is bound first so a
taken port is a clear usage error (exit 2) and port 0 logs the port it got. SIGTERM/SIGINT
stop accepting, finish the requests in flight and exit 0 (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn

from cardscore.core.logs import get_logger

if TYPE_CHECKING:
    from cardscore.core.config import Settings

log = get_logger("serving.server")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class ServeOptions:
    """Command-line choices that override `serving.*` settings for one process."""

    host: str | None = None
    port: int | None = None
    model_poll_seconds: float | None = None
    reader: str | None = None

    def apply(self, settings: Settings) -> Settings:
        from cardscore.core.config.features import FeaturesSettings
        from cardscore.core.config.serving import ServingSettings

        serving = {k: v for k, v in (("host", self.host), ("port", self.port),
                                     ("model_poll_seconds", self.model_poll_seconds)) if v is not None}
        update: dict[str, Any] = {
            "serving": ServingSettings.model_validate({**settings.serving.model_dump(), **serving})}
        if self.reader is not None:
            update["features"] = FeaturesSettings.model_validate(
                {**settings.features.model_dump(), "online_reader": self.reader})
        return settings.model_copy(update=update)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening at once: a client that connects while the app still starts waits in the
    # backlog instead of being refused.
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_server(settings: Settings, options: ServeOptions | None = None) -> int:
    """Serve until stopped; returns the process exit code."""
    from cardscore.serving.app import create_app

    settings = (options or ServeOptions()).apply(settings)
    cfg = settings.serving
    try:
        sock = bind(cfg.host, cfg.port)
    except OSError as exc:
        log.error("serve.port_unavailable", host=cfg.host, port=cfg.port, error=str(exc),
                  hint="set serving.port (or --port) to a free port, or 0 for any")
        return EXIT_USAGE
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    log.info("serve.listening", url=url, docs=f"{url}/openapi.json")
    config = uvicorn.Config(create_app(settings), log_config=None, access_log=cfg.access_log,
                            lifespan="on", timeout_graceful_shutdown=10)
    server = _Server(config)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, server.stop)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return EXIT_OK if server.started else EXIT_FAILED


class _Server(uvicorn.Server):
    """uvicorn's server with the process's own signal handling: after a graceful stop uvicorn
    re-raises the signal it caught (the process then dies of SIGTERM, exit -15); a scorer
    stopped on purpose exits 0, as the stream scorer does."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self, *_args: Any) -> None:
        if self.should_exit:  # a second signal: stop waiting for requests in flight
            self.force_exit = True
        self.should_exit = True
