"""Ingest and stream reject the same records for the same reasons: the one hostile corpus
(`tests/corpus.py`) through both paths, for real, compared record by record.

* ingest: the corpus as a landing file of day `DAY`, the ingest stage on the embedded engine
  (bronze, validation, classification, quarantine and silver Delta tables, gates);
* stream: the corpus as messages of one partition, the stream scorer on the real broker,
  online store and registry (scores and DLQ topics).

Two differences are the documented policy, and asserted as such: `outside_day` (and
`outside_window`, a day too far from the pipeline's clock) is ingest's
alone (a stream message has no landing day: a valid record of another day is scored), and
for a duplicate id ingest, which sees the whole day, rejects every conflicting copy while the
stream has scored the first one before the second arrives (`DUPLICATES` lists both outcomes).
"""

from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import functions as F

from cardscore.core import catalog
from cardscore.core.config import Settings, load_settings
from cardscore.core.stage import job_context
from cardscore.jobs.ingest.stage import ingest_day
from cardscore.schemas.contracts import TRANSACTION_EVENT
from cardscore.schemas.validation import validate_bytes
from cardscore.streaming import dlq
from tests.corpus import DAY, DUPLICATES, TRANSACTION_LINES
from tests.streaming import world

ENTRY_HEADER = "corpus-entry"
LINES = [raw for _, raw, _ in TRANSACTION_LINES] + [d.raw for d in DUPLICATES]


# Valid records a landing day does not take: of another day, or (ingest.day_window) of a day too
# far from the pipeline's clock. A stream message has no landing day: it is scored.
INGEST_ONLY = ("outside_day", "outside_window")


def ingest_outcomes(spark, tmp_path: Path) -> tuple[dict[int, str | None], dict[int, int], object]:
    """Per corpus line (0-based): its quarantine reason or None; silver rows per transaction id."""
    # A corpus day is mostly hostile lines: the day's quarantine-rate gate (which would stop it,
    # rightly) is opened so that every line's own fate can be compared.
    gate = {"max_rejected_rate": 1.0, "max_quarantine_rate": 1.0}
    settings = load_settings(overrides={"home": str(tmp_path / "ingest-home"), "ingest": {"gate": gate}})
    folder = Path(settings.landing_root.removeprefix("file://")) / "transactions" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_bytes(b"".join(raw + b"\n" for raw in LINES))
    job = job_context(settings, spark)
    report = ingest_day(job, DAY).feeds["transactions"]
    quarantined = {r.line_number - 1: r.reason for r in job.lake.read(catalog.QUARANTINE).collect()}
    silver = job.lake.read(catalog.SILVER_TRANSACTIONS).groupBy("transaction_id").agg(F.count("*").alias("n"))
    rows = {r.transaction_id: r.n for r in silver.collect()}
    return {i: quarantined.get(i) for i in range(len(LINES))}, rows, report


def produce_with_entries(settings: Settings) -> None:
    """The corpus as messages of one key (one partition, in corpus order: the duplicate groups
    rely on it), each naming its entry in a header the DLQ keeps."""
    from confluent_kafka import Producer

    producer = Producer(settings.kafka_conf("producer"))
    for i, raw in enumerate(LINES):
        producer.produce(settings.kafka.topics.transactions, key=b"corpus", value=raw,
                         headers=[(ENTRY_HEADER, str(i).encode())])
    assert producer.flush(30) == 0


def stream_outcomes(settings: Settings) -> tuple[dict[int, str | None], dict[int, int]]:
    """Per corpus line: its DLQ reason or None; scores per transaction id."""
    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.totals.get("messages", 0) >= len(LINES), 120, "every message")
    reasons: dict[int, str | None] = dict.fromkeys(range(len(LINES)))
    for message in world.read_all(settings, settings.kafka.topics.dlq):
        reasons[int(dlq.header(message.headers(), ENTRY_HEADER))] = dlq.header(message.headers(), dlq.REASON)
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    return reasons, {tx: len(copies) for tx, copies in scores.items()}


def test_ingest_and_stream_reject_the_same_records_for_the_same_reasons(
    spark, stream_settings: Settings, tmp_path: Path
) -> None:
    ingest, silver_rows, report = ingest_outcomes(spark, tmp_path)
    produce_with_entries(stream_settings)
    stream, scores = stream_outcomes(stream_settings)

    mismatches = []
    for i, (name, raw, expected) in enumerate(TRANSACTION_LINES):
        by_ingest = None if ingest[i] in INGEST_ONLY else ingest[i]  # valid, another day (ingest only)
        if (by_ingest, stream[i]) != (expected, expected):
            mismatches.append(f"{name}: corpus {expected}, ingest {ingest[i]}, stream {stream[i]}")
        if expected is None:
            tx = validate_bytes(raw, TRANSACTION_EVENT)["transaction_id"]  # json.loads fails on some
            assert scores.get(tx) == 1, name
            assert silver_rows.get(tx) == (None if ingest[i] in INGEST_ONLY else 1), name
    offset = len(TRANSACTION_LINES)
    for j, duplicate in enumerate(DUPLICATES):
        i = offset + j
        by_ingest = ingest[i] or ("accepted" if _first_of_id(j) else "duplicate")
        by_stream = stream[i] or "scored"
        if (by_ingest, by_stream) != (duplicate.ingest, duplicate.stream):
            mismatches.append(f"{duplicate.name}: expected ingest {duplicate.ingest} / stream {duplicate.stream}, "
                              f"got {by_ingest} / {by_stream}")
    assert not mismatches, "\n".join(mismatches)
    # identical copies: ingest keeps one row and counts the others; the stream scores each
    assert silver_rows[203] == 1 and report.duplicates == 2 and scores[203] == 3
    assert 201 not in silver_rows and scores[201] == 1 and scores[202] == 1


def _first_of_id(j: int) -> bool:
    tx = json.loads(DUPLICATES[j].raw)["transaction_id"]
    return all(json.loads(d.raw)["transaction_id"] != tx for d in DUPLICATES[:j])
