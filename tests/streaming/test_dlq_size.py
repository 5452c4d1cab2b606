"""A rejected message too large to copy to the DLQ must not stop the scorer: the DLQ gets a copy
cut to fit (or, when even that is refused, a reference), and its headers say so.

The limit is real: the scorer's producer gets a small `message.max.bytes` (librdkafka refuses a
larger record when it is produced), the oversized message is produced by a client with the
default limit to the real broker. The embedded broker keeps a topic's `max.message.bytes`
config but does not enforce it, so the broker-side refusal is not exercised here."""

from __future__ import annotations

from cardscore.core.config import Settings
from cardscore.streaming import dlq
from cardscore.streaming.dlq_replay import replay
from tests.streaming import world

PRODUCER_LIMIT = 20_000


def small_producer(settings: Settings) -> Settings:
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(
        update={"producer": {**settings.kafka.producer, "message.max.bytes": str(PRODUCER_LIMIT)}})})


def test_an_oversized_message_too_large_for_the_dlq_is_cut_and_the_scorer_goes_on(stream_settings: Settings) -> None:
    settings = small_producer(stream_settings)
    records = world.transactions(30, seed=61)
    big = b'{"transaction_id":7000,"pad":"' + b"x" * 100_000 + b'"}'  # > ingest.max_line_bytes
    # produced with the default client limit (1 MB): the broker takes it
    world.produce(stream_settings, [*records[:15], (b"big", big), *records[15:]])
    with world.InProcessScorer(settings) as running:
        running.wait_for(lambda: running.totals.get("messages", 0) >= 31, 60, "every message")
        assert running.metric("cardscore_stream_dlq_truncated_total") == 1
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in records)
    [dead] = world.read_all(settings, settings.kafka.topics.dlq)
    headers = dead.headers()
    assert dlq.header(headers, dlq.REASON) == "oversized"
    assert dlq.header(headers, dlq.TRUNCATED) == "value"
    assert dlq.header(headers, dlq.ORIGINAL_BYTES) == str(len(big))
    assert dead.key() == b"big" and big.startswith(dead.value()) and len(dead.value()) < PRODUCER_LIMIT
    source = (dlq.header(headers, dlq.SOURCE_PARTITION), dlq.header(headers, dlq.SOURCE_OFFSET))
    original = [m for m in world.read_all(settings, settings.kafka.topics.transactions) if m.key() == b"big"]
    assert [(str(m.partition()), str(m.offset())) for m in original] == [source]
    # replay cannot restore a cut copy: it is counted, not replayed
    report = replay(settings)
    assert report.truncated == {"oversized": 1} and not report.replayed


def test_a_dlq_record_refused_by_the_producer_goes_out_as_a_reference(stream_settings: Settings) -> None:
    """A scorer that does not know the limit copies the message whole (as when a broker
    enforces a lower limit than the topic config it reports); the producer refuses it; the
    reference goes instead, in the same batch, without a retry. The scorer is told the limit is
    unknown after it read it: the one change to the real objects."""
    settings = small_producer(stream_settings)
    records = world.transactions(10, seed=62)
    big = b'{"pad":"' + b"y" * 50_000 + b'"}'
    world.produce(stream_settings, [*records[:5], (b"big", big), *records[5:]])
    running = world.InProcessScorer(settings)
    scorer = running.scorer
    original_make = scorer._make_delivery

    def make_without_limit():
        delivery = original_make()
        scorer.dlq_max_bytes = 0  # unknown limit: records go out whole
        return delivery

    scorer._make_delivery = make_without_limit
    with running:
        running.wait_for(lambda: running.totals.get("messages", 0) >= 11, 60, "every message")
        assert running.metric("cardscore_stream_retries_total", {"stage": "delivery"}) == 0
    scores = world.scores_by_id(world.read_all(settings, settings.kafka.topics.scores))
    assert sorted(scores) == sorted(r["transaction_id"] for r in records)
    [dead] = world.read_all(settings, settings.kafka.topics.dlq)
    assert dlq.header(dead.headers(), dlq.TRUNCATED) == "value,headers,key"
    assert dlq.header(dead.headers(), dlq.REASON) == "missing_field"
    assert dlq.header(dead.headers(), dlq.SOURCE_TOPIC) == settings.kafka.topics.transactions
    assert dead.value() == b"" and dlq.header(dead.headers(), dlq.ORIGINAL_BYTES) == str(len(big))
