"""A local Apache Kafka cluster in KRaft mode, run from the jars `make jars` fetched.

Each node is one JVM (`kafka.Kafka`) with both KRaft roles, broker and controller; the
controllers form a static quorum (`controller.quorum.voters`). Everything a node has lives
under `<root>/node-<i>`: its `server.properties`, its data (`data/`), its log (`kafka.log`)
and its pid file. `<root>/cluster.json` records the layout chosen when the cluster was
formatted (cluster id, node count, ports), so a restart finds the same data at the same
addresses; the ports are free ports picked then.

With N nodes the replication defaults are those of a production cluster of that size: for
3 or more nodes replication factor 3 and `min.insync.replicas` 2 for new topics and for the
internal topics (consumer offsets, transaction state), so an `acks=all` write survives the
loss of any one broker; 1 and 1 on a single node.

Two ways to own the processes: `detached=True` (`cardscore broker start --kafka`) starts
them in their own session, they outlive the command and `stop` finds them by pid file;
`detached=False` (tests, the demo, benchmarks) makes every node die with the process that
started it (Linux PDEATHSIG), as the embedded broker does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from cardscore.core.config import Settings
from cardscore.services.broker import free_port
from cardscore.services.process import (
    ServiceError,
    ServiceStatus,
    dying_with_parent,
    running_pid,
    wait_until,
)

REPO_JARS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "jvm" / "lib" / "kafka"
LAYOUT_FILE = "cluster.json"
BROKER_MAIN = "kafka.Kafka"
FORMAT_MAIN = "kafka.tools.StorageTool"
CDS_ARCHIVE = "cardscore-kafka.jsa"  # beside the jars; the classpath wildcard skips it
# Kafka's own GC settings, plus C1-only JIT: a local cluster lives minutes to hours and the
# C2 compiler's warm-up costs more than it returns there (measured on a loaded 2-core host,
# one node: CPU to the first metadata answer 3.7 s -> 2.0 s, CPU through start + 50k
# messages produced and consumed 7.1 s -> 3.5 s, and the load itself no slower). Options in
# `kafka.jvm_options` come after these, so `-XX:TieredStopAtLevel=4` restores the full JIT.
LOCAL_JVM_OPTIONS = (
    "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
)

# The broker logs through log4j2 to stdout, which is the node's kafka.log. Config dumps
# (hundreds of lines per client and per node start) and per-request logs are left out.
LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d{yyyy-MM-dd'T'HH:mm:ss.nnnnnn}{UTC}Z] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
  </Loggers>
</Configuration>
"""


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    broker_port: int
    controller_port: int


@dataclass(frozen=True)
class Layout:
    """What `cluster.json` holds: fixed when the cluster is formatted."""

    cluster_id: str
    host: str
    nodes: tuple[NodeSpec, ...]

    @property
    def replication_factor(self) -> int:
        return min(len(self.nodes), 3)

    @property
    def min_insync_replicas(self) -> int:
        return max(1, self.replication_factor - 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.broker_port}" for n in self.nodes)

    def to_json(self) -> str:
        return json.dumps({"cluster_id": self.cluster_id, "host": self.host,
                           "nodes": [asdict(n) for n in self.nodes]}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Layout:
        data = json.loads(text)
        return cls(data["cluster_id"], data["host"], tuple(NodeSpec(**n) for n in data["nodes"]))

    @classmethod
    def new(cls, nodes: int, host: str) -> Layout:
        ports = _distinct_free_ports(2 * nodes, host)
        specs = tuple(NodeSpec(i, ports[2 * i], ports[2 * i + 1]) for i in range(nodes))
        return cls(new_cluster_id(), host, specs)


def _distinct_free_ports(count: int, host: str) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


def new_cluster_id() -> str:
    """A random cluster id in Kafka's Uuid text form (URL-safe base64 of 16 bytes, no padding)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's own generator avoids ids that look like options
            return text


def server_properties(layout: Layout, node: NodeSpec, data_dir: Path) -> str:
    host = layout.host
    voters = ",".join(f"{n.node_id}@{host}:{n.controller_port}" for n in layout.nodes)
    rf, isr = layout.replication_factor, layout.min_insync_replicas
    props = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{node.broker_port},CONTROLLER://{host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{node.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data_dir,
        # Replication as on a production cluster of this size (see the module docstring).
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "unclean.leader.election.enable": "false",
        # Local sizes: the internal topics are created on first use, 50 partitions each by
        # default; 10 are created in a fraction of the time and are plenty for one machine.
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.num.partitions": 10,
        # A new consumer group starts at once instead of waiting 3 s for more members.
        "group.initial.rebalance.delay.ms": 0,
        # Topics are created explicitly (`cardscore topics create`), as on a managed cluster:
        # a typo in a topic name fails instead of creating a new topic.
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in props.items())


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ServiceError("java not found: Apache Kafka needs a Java 17+ runtime "
                           "(Debian: apt-get install openjdk-17-jdk-headless)")
    return found


def check_jars(jars_dir: Path) -> Path:
    if not any(jars_dir.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"no Apache Kafka jars in {jars_dir}: run `make jars` (needs mvn and java), "
                           "or set kafka.jars_dir to a folder holding them")
    return jars_dir


def jars_dir_of(settings: Settings) -> Path:
    if settings.kafka.jars_dir:
        path = Path(os.path.expanduser(settings.kafka.jars_dir))
        return path if path.is_absolute() else (Path(settings.base_dir) / path).resolve()
    return REPO_JARS_DIR


class KafkaNode:
    """One node's files and process."""

    def __init__(self, cluster: KafkaCluster, spec: NodeSpec) -> None:
        self.cluster = cluster
        self.spec = spec
        self.dir = cluster.root / f"node-{spec.node_id}"
        self.data_dir = self.dir / "data"
        self.properties = self.dir / "server.properties"
        self.log_file = self.dir / "kafka.log"
        self.pid_file = self.dir / "kafka.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.cluster.host}:{self.spec.broker_port}"

    def argv(self, main: str, *args: str, cds: Sequence[str] = ()) -> list[str]:
        c = self.cluster
        return [
            c.java, f"-Xmx{c.heap}", *LOCAL_JVM_OPTIONS, *c.jvm_options, *cds,
            f"-Dlog4j2.configurationFile={c.root / 'log4j2.xml'}",
            "-cp", f"{c.jars_dir}/*", main, *args,
        ]

    # Class-data sharing: a JVM loading Kafka's ~4,000 classes from an AppCDS archive starts
    # in about 60% of the time and CPU (measured: 5.4 s -> 3.2 s to the first metadata answer).
    # The archive is dumped by node 0 when it exits after a run without one, under a temporary
    # name that `stop` moves into place (a node killed mid-dump leaves no half archive), and
    # lives beside the jars. A JVM that finds it does not match (another Java build, other
    # jars) ignores it with a warning: the archive is an optimisation, never a requirement.

    @property
    def _cds_pending(self) -> Path:
        return self.dir / "cds-pending"

    def cds_options(self) -> list[str]:
        archive = self.cluster.cds_archive
        if not self.cluster.class_data_sharing:
            return []
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}"]
        if self.spec.node_id != 0 or not os.access(archive.parent, os.W_OK):
            return []
        tmp = archive.parent / f".{archive.name}.{uuid.uuid4().hex}.tmp"
        self._cds_pending.write_text(str(tmp))
        return [f"-XX:ArchiveClassesAtExit={tmp}"]

    def settle_cds(self) -> None:
        """After the node's JVM exited: move a dumped archive into place, drop a partial one."""
        try:
            tmp = Path(self._cds_pending.read_text().strip())
        except FileNotFoundError:
            return
        self._cds_pending.unlink(missing_ok=True)
        if tmp.exists() and tmp.stat().st_size > 0 and not self.cluster.cds_archive.exists():
            os.replace(tmp, self.cluster.cds_archive)
        tmp.unlink(missing_ok=True)

    def pid(self) -> int | None:
        """The node's pid if it runs: the pid file's process, alive, with this node's
        properties file on its command line (a recycled pid is never signalled)."""
        return running_pid(self.pid_file, str(self.properties))

    def start(self) -> None:
        if self.pid() is not None:
            return
        self.settle_cds()  # a run that was killed may have left a partial archive
        with open(self.log_file, "ab") as log:
            argv = self.argv(BROKER_MAIN, str(self.properties), cds=self.cds_options())
            # detached: survives the CLI that started it; owned: dies with its owner.
            self._proc = subprocess.Popen(
                argv if self.cluster.detached else dying_with_parent(argv),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=self.cluster.detached,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")

    def exited(self) -> int | None:
        """The exit code if this process started the node and it has exited, else None."""
        return None if self._proc is None else self._proc.poll()

    def stop(self, grace: float) -> bool:
        """SIGTERM (a controlled shutdown), then SIGKILL after `grace` seconds."""
        return self._signal(signal.SIGTERM, grace)

    def wait_stopped(self, grace: float) -> bool:
        """After a SIGTERM sent elsewhere: wait up to `grace` s, then SIGKILL."""
        return self._signal(None, grace)

    def kill(self) -> bool:
        """SIGKILL: a crash, no controlled shutdown (tests)."""
        return self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: signal.Signals | None, grace: float) -> bool:
        """Send `sig` (None: it was sent already) and wait up to `grace` s, then SIGKILL."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            proc = psutil.Process(pid)
            if sig is not None:
                proc.send_signal(sig)
            try:
                proc.wait(timeout=grace)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        except psutil.NoSuchProcess:
            pass
        if self._proc is not None:
            self._proc.poll()  # psutil reaped it; let Popen know it is gone
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        self.settle_cds()
        return True

    def status(self) -> ServiceStatus:
        pid = self.pid()
        return ServiceStatus(f"kafka node {self.spec.node_id}", pid is not None, pid, self.address,
                             self.log_file)


@dataclass(frozen=True)
class ClusterStatus:
    root: Path
    layout: Layout | None
    nodes: tuple[ServiceStatus, ...]
    brokers_answering: int

    @property
    def running(self) -> bool:
        return bool(self.nodes) and all(n.running for n in self.nodes)

    def describe(self) -> str:
        if self.layout is None:
            return f"kafka: not formatted under {self.root}"
        n = len(self.layout.nodes)
        state = "running" if self.running else "stopped" if not any(s.running for s in self.nodes) else "degraded"
        lines = [
            f"kafka: {state}, {n} node{'s' if n > 1 else ''}, {self.brokers_answering} of {n} brokers "
            f"answer metadata; bootstrap {self.layout.bootstrap}",
            f"  replication factor {self.layout.replication_factor}, min.insync.replicas "
            f"{self.layout.min_insync_replicas}; cluster id {self.layout.cluster_id}; data {self.root}",
        ]
        lines += [f"  {node.describe()}" for node in self.nodes]
        return "\n".join(lines)


class KafkaCluster:
    """An Apache Kafka cluster of `nodes` KRaft nodes with its state under `root`.

    `nodes=None` takes the count from an existing layout (stop, status); starting a
    formatted cluster with another count is refused (its data would not match).
    """

    def __init__(
        self,
        root: Path,
        nodes: int | None = 1,
        *,
        jars_dir: Path = REPO_JARS_DIR,
        host: str = "127.0.0.1",
        heap: str = "512m",
        detached: bool = False,
        class_data_sharing: bool = True,
        jvm_options: Sequence[str] = (),
    ) -> None:
        self.root = Path(root)
        self.class_data_sharing = class_data_sharing  # False: no AppCDS archive (benchmarks)
        self.jvm_options = list(jvm_options)  # more JVM options for every node
        self.jars_dir = Path(jars_dir)
        self.host = host
        self.heap = heap
        self.detached = detached
        self.layout = self._read_layout()
        if nodes is not None and nodes < 1:
            raise ValueError("a cluster has at least one node")
        if self.layout is not None and nodes is not None and len(self.layout.nodes) != nodes:
            raise ServiceError(
                f"{self.root} holds a {len(self.layout.nodes)}-node cluster, not {nodes}: start it with "
                f"--nodes {len(self.layout.nodes)}, or stop it and remove {self.root} for a new one"
            )
        self.requested_nodes = nodes
        self._java: str | None = None
        self._nodes: list[KafkaNode] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, nodes: int | None = None, detached: bool = True) -> KafkaCluster:
        """The cluster of `cardscore broker ... --kafka`: under <home>/kafka."""
        return cls(settings.home_path / "kafka", nodes, jars_dir=jars_dir_of(settings),
                   heap=settings.kafka.jvm_heap, detached=detached, jvm_options=settings.kafka.jvm_options)

    # ------------------------------------------------------------------ addresses

    @property
    def cds_archive(self) -> Path:
        return self.jars_dir / CDS_ARCHIVE

    @property
    def java(self) -> str:
        if self._java is None:
            self._java = java_binary()
        return self._java

    @property
    def nodes(self) -> list[KafkaNode]:
        if self.layout is None:
            return []
        if self._nodes is None:
            self._nodes = [KafkaNode(self, spec) for spec in self.layout.nodes]
        return self._nodes

    @property
    def bootstrap(self) -> str:
        if self.layout is None:
            raise ServiceError(f"no Kafka cluster under {self.root}: start it first")
        return self.layout.bootstrap

    @property
    def conf(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap}

    @property
    def size(self) -> int:
        return len(self.layout.nodes) if self.layout else (self.requested_nodes or 0)

    def _read_layout(self) -> Layout | None:
        try:
            return Layout.from_json((self.root / LAYOUT_FILE).read_text())
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        """Format on first use, start every node not running, and return once the cluster
        answers metadata with all its brokers. ServiceError (naming the log) otherwise."""
        check_jars(self.jars_dir)
        if self.layout is None:
            self._format()
        (self.root / "log4j2.xml").write_text(LOG4J2_XML)
        for node in self.nodes:
            node.start()
        try:
            self.wait_ready(timeout)
        except ServiceError:
            self.stop(grace=10.0)  # no half-started cluster is left behind; the error names the logs
            raise
        return self

    def _format(self) -> None:
        """Pick the ports, write each node's properties and format its storage (once)."""
        nodes = self.requested_nodes or 1
        layout = Layout.new(nodes, self.host)
        self.root.mkdir(parents=True, exist_ok=True)
        self.layout, self._nodes = layout, None
        # A format that stopped half-way left no cluster.json: its node folders are unusable.
        for node in self.nodes:
            shutil.rmtree(node.dir, ignore_errors=True)
            node.dir.mkdir(parents=True)
            node.properties.write_text(server_properties(layout, node.spec, node.data_dir))
        (self.root / "log4j2.xml").write_text(LOG4J2_XML)
        # One JVM per node, all at once: each costs a few seconds of start-up.
        running = []
        sharing = self.class_data_sharing and self.cds_archive.exists()
        cds = [f"-XX:SharedArchiveFile={self.cds_archive}"] if sharing else []
        for node in self.nodes:
            log = open(node.dir / "format.log", "wb")  # noqa: SIM115 - closed below
            proc = subprocess.Popen(
                dying_with_parent(node.argv(FORMAT_MAIN, "format", "--ignore-formatted", "-t", layout.cluster_id,
                                            "-c", str(node.properties), cds=cds)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
            running.append((node, proc, log))
        failed = []
        for node, proc, log in running:
            code = proc.wait(timeout=300)
            log.close()
            if code != 0:
                failed.append(f"node {node.spec.node_id} (exit {code}; see {node.dir / 'format.log'})")
        if failed:
            self.layout, self._nodes = None, None
            raise ServiceError("formatting the Kafka storage failed: " + ", ".join(failed))
        (self.root / LAYOUT_FILE).write_text(layout.to_json())

    def brokers_answering(self, timeout: float = 1.0) -> int:
        """How many brokers the cluster's metadata lists (0 when nobody answers)."""
        if self.layout is None:
            return 0
        admin = AdminClient({**self.conf, "socket.connection.setup.timeout.ms": "1000", "log_level": "0"})
        try:
            return len(admin.list_topics(timeout=timeout).brokers)
        except KafkaException:
            return 0

    def wait_ready(self, timeout: float = 120.0, brokers: int | None = None) -> None:
        """Until the metadata lists `brokers` brokers (default: all nodes)."""
        want = self.size if brokers is None else brokers

        def ready() -> bool:
            for node in self.nodes:
                code = node.exited()
                if code is not None:
                    raise ServiceError(f"kafka node {node.spec.node_id} exited with code {code} during "
                                       f"start; see {node.log_file}")
            return self.brokers_answering() >= want

        try:
            wait_until(ready, timeout, interval=0.2, what=f"{want} Kafka brokers")
        except TimeoutError:
            logs = ", ".join(str(n.log_file) for n in self.nodes)
            raise ServiceError(f"the Kafka cluster did not answer with {want} brokers within "
                               f"{timeout:.0f}s; see {logs}") from None

    def stop(self, grace: float = 30.0) -> bool:
        """Stop every node: SIGTERM to all at once (each does a controlled shutdown while the
        controller quorum is still up), SIGKILL after `grace`. False if none was running."""
        running = [(node, node.pid()) for node in self.nodes]
        running = [(node, pid) for node, pid in running if pid is not None]
        if not running:
            return False
        for _node, pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node, _pid in running:
            node.wait_stopped(max(0.1, deadline - time.monotonic()))
        return True

    def stop_node(self, node_id: int, grace: float = 30.0) -> bool:
        return self.nodes[node_id].stop(grace)

    def kill_node(self, node_id: int) -> bool:
        return self.nodes[node_id].kill()

    def start_node(self, node_id: int, timeout: float = 120.0) -> None:
        """Start one stopped node and wait until every broker answers again."""
        self.nodes[node_id].start()
        self.wait_ready(timeout)

    def status(self) -> ClusterStatus:
        nodes = tuple(node.status() for node in self.nodes)
        answering = self.brokers_answering() if any(n.running for n in nodes) else 0
        return ClusterStatus(self.root, self.layout, nodes, answering)

    def warm_up(self, timeout: float = 60.0) -> None:
        """Do once what a new cluster does on first use, so no later timing includes it: the
        internal topics (consumer offsets, transaction state) are created and each broker
        gets a block of producer ids (until then clients get "coordinator load in progress"
        or "not coordinator" answers, and retry)."""
        from confluent_kafka import Consumer, Producer, TopicPartition

        from cardscore.services.broker import create_topics

        topic = f"cardscore-warm-up-{uuid.uuid4().hex[:8]}"
        create_topics(self.conf, {topic: self.size}, self.size)
        transactional = Producer({**self.conf, "transactional.id": topic})
        transactional.init_transactions(timeout)
        transactional.begin_transaction()
        for partition in range(self.size):  # a partition led by every broker
            transactional.produce(topic, b"warm-up", partition=partition)
        transactional.commit_transaction(timeout)
        idempotent = Producer({**self.conf, "enable.idempotence": "true"})
        for partition in range(self.size):
            idempotent.produce(topic, b"warm-up", partition=partition)
        if idempotent.flush(timeout):
            raise ServiceError("the Kafka cluster did not acknowledge the warm-up messages")
        consumer = Consumer({**self.conf, "group.id": topic})

        def committed() -> bool:
            try:
                consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
                return True
            except KafkaException:  # the offsets topic is new: its coordinator is loading
                return False

        try:
            wait_until(committed, timeout, interval=0.2, what="the first offset commit")
        finally:
            consumer.close()
        AdminClient(self.conf).delete_topics([topic])

    def env(self) -> dict[str, str]:
        """Environment variables that point cardscore's clients at this cluster."""
        assert self.layout is not None
        return {
            "CARDSCORE__KAFKA__MODE": "external",
            "CARDSCORE__KAFKA__CLIENT__BOOTSTRAP_SERVERS": self.layout.bootstrap,
            "CARDSCORE__KAFKA__REPLICATION_FACTOR": str(self.layout.replication_factor),
        }

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

