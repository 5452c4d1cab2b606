"""kcat against the local Apache Kafka: the README's commands as written (no -X options),
through `cardscore broker env --kafka`, on the run's one-node cluster."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from cardscore.services.broker import create_topics
from cardscore.services.kafka_cluster import KafkaCluster
from tests.support.readme import REPO, bash_block

pytestmark = [pytest.mark.kafka, pytest.mark.engine]

DLQ = "cardscore.transactions.dlq"


def test_kcat_lists_and_reads_the_local_kafka_as_the_readme_writes(kafka1: KafkaCluster, tmp_path: Path) -> None:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed: the README's Kafka client is tested for real "
                    "(Debian/Ubuntu: apt-get install kcat)")
    # `cardscore broker env --kafka` reads the cluster of <home>/kafka: this home's is the run's cluster.
    home = tmp_path / "home"
    home.mkdir()
    (home / "kafka").symlink_to(kafka1.root, target_is_directory=True)
    create_topics(kafka1.conf, {DLQ: 2})
    marker = uuid.uuid4().hex
    producer = Producer({**kafka1.conf, "enable.idempotence": "true", "acks": "all"})
    for i in range(3):
        producer.produce(DLQ, key=str(i).encode(), value=b'{"transaction_id": %d, "run": "%s"}' % (i, marker.encode()),
                         headers={"dlq.reason": b"wrong_type"})
    assert producer.flush(30) == 0

    block = bash_block('kcat -b "$CARDSCORE__KAFKA__CLIENT__BOOTSTRAP_SERVERS" -L')
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(Path.home()),
           "CARDSCORE__HOME": str(home)}
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], capture_output=True, text=True,
                          timeout=180, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f'topic "{DLQ}" with 2 partitions' in done.stdout, done.stdout[-3000:]
    mine = [line for line in done.stdout.splitlines() if marker in line]
    assert len(mine) == 3, done.stdout[-3000:]
    assert all(line.startswith(f"{DLQ}[") and "dlq.reason=wrong_type" in line for line in mine), mine
