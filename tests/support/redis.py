"""A real redis-server on a free loopback port, owned by a test (started, stopped, restarted)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path


class RedisServer:
    """`redis-server` in memory (no persistence) on 127.0.0.1:<port>; `address` is host:port."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        from cardscore.services.broker import free_port

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError(
                "redis-server is not installed: the Redis online store is tested against a real "
                "server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
            )
        self.folder = folder
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> RedisServer:
        import redis

        log_path = self.folder / "redis.log"
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.folder)],
                stdout=log_file, stderr=subprocess.STDOUT,
            )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    if client.ping():
                        return self
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s") from None
                    time.sleep(0.05)  # poll interval of the readiness check, not a synchronisation
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
