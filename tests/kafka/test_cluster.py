"""The local Apache Kafka cluster itself: the README's commands as written, replication
settings of the 3-node cluster, a clear message when the jars are missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from cardscore.services.kafka_cluster import KafkaCluster

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOT_RUN_HERE = {"make jars"}  # `make test` (and .ci/run) run it before the suite


def readme_block(heading: str) -> list[str]:
    """The commands of the first bash block after `heading` in the README, comments removed."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"no bash block after {heading!r}"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_commands_start_a_three_node_cluster_that_keeps_its_data(tmp_path: Path) -> None:
    commands = readme_block("### Real Kafka")
    assert "cardscore broker start --kafka --nodes 3" in commands
    assert set(commands) >= NOT_RUN_HERE
    script = "\n".join(["set -euo pipefail", *[c for c in commands if c not in NOT_RUN_HERE]])
    home = tmp_path / "home"
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "CARDSCORE__HOME": str(home)}
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    try:
        run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-4000:]
    finally:  # whatever happened, no node outlives the test
        KafkaCluster(home / "kafka", None).stop()
    assert re.search(r"kafka: running, 3 nodes, 3 of 3 brokers answer metadata", output), output
    assert "replication factor 3, min.insync.replicas 2" in output
    assert "cardscore.transactions: 4 partitions (created)" in output
    assert output.count("kafka: stopped (data kept)") == 2
    # after the restart the topics were still there: listed, not created again
    assert output.count("cardscore.scores: 4 partitions") == 2
    # every partition has a replica on each of the three nodes' disks
    for node in range(3):
        data = home / "kafka" / f"node-{node}" / "data"
        assert {p.name for p in data.glob("cardscore.transactions-*")} == {f"cardscore.transactions-{p}" for p in range(4)}


def test_three_node_cluster_replicates_three_ways_with_two_in_sync(kafka3: KafkaCluster) -> None:
    admin = AdminClient(kafka3.conf)
    assert len(admin.list_topics(timeout=10).brokers) == 3
    name = f"t-{uuid.uuid4().hex[:8]}"
    # replication factor -1: the broker's default.replication.factor
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=-1)])[name].result(30)
    # a consumer group's first commit creates the offsets topic
    consumer = Consumer({**kafka3.conf, "group.id": f"g-{name}"})
    consumer.commit(offsets=[TopicPartition(name, 0, 0)], asynchronous=False)
    consumer.close()
    metadata = admin.list_topics(timeout=10).topics
    for topic in (name, "__consumer_offsets"):
        assert {len(p.replicas) for p in metadata[topic].partitions.values()} == {3}, topic
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in (name, "__consumer_offsets")]
    for resource, future in admin.describe_configs(resources).items():
        assert future.result(30)["min.insync.replicas"].value == "2", resource


def test_broker_options_without_a_cluster(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import cardscore.cli  # noqa: F401  (registers every command on the app)
    from cardscore.cli.app import app

    env = {"CARDSCORE__HOME": str(tmp_path), "CARDSCORE__KAFKA__EMBEDDED_PORT": "19555"}
    runner = CliRunner(env=env)
    status = runner.invoke(app, ["broker", "status", "--kafka"])
    assert status.exit_code == 1 and "not formatted" in status.output
    assert runner.invoke(app, ["broker", "stop", "--kafka"]).exit_code == 0
    assert runner.invoke(app, ["broker", "env", "--kafka"]).exit_code == 1
    assert runner.invoke(app, ["broker", "start", "--nodes", "3"]).exit_code == 2  # --nodes needs --kafka
    embedded = runner.invoke(app, ["broker", "env"])
    assert embedded.exit_code == 0
    assert embedded.stdout.splitlines() == ["export CARDSCORE__KAFKA__MODE=embedded",
                                            "export CARDSCORE__KAFKA__EMBEDDED_PORT=19555"]


def test_missing_jars_say_to_run_make_jars(tmp_path: Path) -> None:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "CARDSCORE__HOME": str(tmp_path),
           "CARDSCORE__KAFKA__JARS_DIR": str(tmp_path / "no-jars")}
    run = subprocess.run([str(BIN / "cardscore"), "broker", "start", "--kafka"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert run.returncode == 1
    assert "run `make jars`" in run.stderr and str(tmp_path / "no-jars") in run.stderr
    assert not (tmp_path / "kafka" / "cluster.json").exists()
