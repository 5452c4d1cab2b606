"""A Kafka command-line client against the embedded broker: the README's kcat commands, run as
written (only the port is the test broker's), list the topics and read a topic with headers."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from confluent_kafka import Producer

from cardscore.services.broker import EmbeddedBroker, create_topics
from tests.support.readme import REPO, bash_block

pytestmark = pytest.mark.engine  # starts a broker

README_PORT = "127.0.0.1:19092"  # kafka.embedded_port, as the README writes it
DLQ = "cardscore.transactions.dlq"


def test_kcat_lists_and_reads_topics_of_the_embedded_broker(tmp_path) -> None:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed: the README's Kafka client is tested for real "
                    "(Debian/Ubuntu: apt-get install kcat)")
    with EmbeddedBroker(log_file=tmp_path / "broker.log") as broker:
        create_topics(broker.conf, {DLQ: 2})
        producer = Producer({**broker.conf, "enable.idempotence": "true", "acks": "all"})
        for i in range(3):  # what the stream scorer dead-letters: the original bytes, a reason header
            producer.produce(DLQ, key=str(i).encode(), value=b'{"transaction_id": %d, "amount": "x"}' % i,
                             headers={"dlq.reason": b"wrong_type", "dlq.source.offset": str(i).encode()})
        assert producer.flush(15) == 0

        block = bash_block("broker.version.fallback=0.9.0")
        assert README_PORT in block
        done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block.replace(README_PORT, broker.bootstrap)],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f'topic "{DLQ}" with 2 partitions' in done.stdout, done.stdout
    records = [line for line in done.stdout.splitlines() if line.startswith(f"{DLQ}[")]
    assert len(records) == 3, done.stdout
    for i in range(3):
        assert any(f'"transaction_id": {i},' in r and "dlq.reason=wrong_type" in r for r in records), records
    assert "ApiVersionRequest failed" not in done.stderr
