"""Pure parts of the stream scorer: validation split, DLQ records (and their size limit), score
messages, offsets, metrics, the duplicate-id window. No broker, no store."""

from __future__ import annotations

import json
from datetime import date

import jsonschema
import numpy as np
import pytest
from confluent_kafka import Message
from prometheus_client import generate_latest

from cardscore.features.fresh import FRESH_FEATURE_NAMES
from cardscore.schemas.contracts import SCORE_EVENT
from cardscore.schemas.reasons import RejectReason
from cardscore.schemas.serialization import event_line
from cardscore.schemas.timestamps import format_timestamp_us
from cardscore.streaming import dlq
from cardscore.streaming.duplicates import RecentTransactions
from cardscore.streaming.features import snapshot_dates
from cardscore.streaming.messages import (
    Rejected,
    first_offsets,
    next_offsets,
    split_label_messages,
    split_messages,
)
from cardscore.streaming.metrics import StreamMetrics
from cardscore.streaming.output import (
    ScoreColumns,
    score_json_schema,
    score_values,
    timestamp_texts,
)
from tests.corpus import GOOD, LABEL_LINES, MARKER
from tests.corpus import STREAM_BAD as BAD

HEADERS = [("content-type", b"application/json"), ("schema", b"transaction_event.v2")]


def message(value: bytes | None, offset: int, partition: int = 0, key: bytes | None = b"3") -> Message:
    return Message(topic="tx", partition=partition, offset=offset, key=key, value=value,
                   headers=HEADERS, timestamp=(1, 1_523_095_200_123))


def test_split_sends_every_bad_message_to_rejections_with_its_reason() -> None:
    good = json.dumps(GOOD).encode()
    messages = [message(good, 0)] + [message(raw, i + 1) for i, (_, raw, _) in enumerate(BAD)]
    split = split_messages(messages, max_bytes=64 * 1024)
    assert len(split.valid) == 1 and split.valid.records[0]["transaction_id"] == GOOD["transaction_id"]
    assert [r.reason for r in split.rejected] == [reason for _, _, reason in BAD]
    assert split.valid.key_mismatches == 0
    assert split.valid.kafka_timestamp_ms.tolist() == [1_523_095_200_123]


def test_label_split_decides_every_corpus_line_as_the_contract_does() -> None:
    """The labels topic's validation (the fresh-stream pipeline's): each corpus label line is
    accepted or rejected with the corpus's reason, reports outside 1970-2199 included."""
    messages = [message(raw, i) for i, (_, raw, _) in enumerate(LABEL_LINES)]
    split = split_label_messages(messages, max_bytes=64 * 1024)
    rejected = {r.message.offset(): r.reason.value for r in split.rejected}
    accepted = {m.offset() for m in split.messages}
    for i, (name, _, reason) in enumerate(LABEL_LINES):
        if reason is None:
            assert i in accepted and i not in rejected, name
        else:
            assert rejected.get(i) == reason, name
    assert "report in 9999" in {name for name, _, reason in LABEL_LINES if reason == "out_of_range"}


def test_a_valid_record_with_a_foreign_key_is_scored_and_counted() -> None:
    split = split_messages([message(json.dumps(GOOD).encode(), 0, key=b"999")], 1024)
    assert len(split.valid) == 1 and split.valid.key_mismatches == 1


def test_dlq_record_keeps_the_original_bytes_and_says_why() -> None:
    raw = b"{not json " + MARKER.encode()
    rejected = split_messages([message(raw, 41, partition=1, key=b"k1")], 1024).rejected[0]
    record = dlq.dlq_record(rejected, "g/i-1", at_us=1_700_000_000_000_000, detail_max_chars=20)
    assert (record.key, record.value) == (b"k1", raw)
    assert record.headers[:2] == HEADERS  # original headers first, unchanged
    assert dlq.header(record.headers, dlq.REASON) == "malformed_json"
    assert len(dlq.header(record.headers, dlq.DETAIL)) <= 20
    assert dlq.header(record.headers, dlq.SOURCE_TOPIC) == "tx"
    assert dlq.header(record.headers, dlq.SOURCE_PARTITION) == "1"
    assert dlq.header(record.headers, dlq.SOURCE_OFFSET) == "41"
    assert dlq.header(record.headers, dlq.SOURCE_TIMESTAMP) == "1523095200123"
    assert dlq.header(record.headers, dlq.SCORER) == "g/i-1"
    assert dlq.header(record.headers, dlq.AT) == "2023-11-14T22:13:20Z"
    assert dlq.original_headers(record.headers) == HEADERS


def test_score_values_are_byte_identical_to_the_contract_serialiser_and_match_its_schema() -> None:
    rng = np.random.default_rng(3)
    n = 64
    columns = ScoreColumns(
        transaction_id=rng.integers(0, 2**62, n), customer_id=rng.integers(0, 10**6, n),
        terminal_id=rng.integers(0, 10**6, n),
        event_time_us=np.concatenate([[1_522_540_800_000_000, -1], rng.integers(0, 2**51, n - 2)]),
        score=rng.random(n).astype(np.float32), model_name='fraud "model" {x}', model_version="12",
        feature_snapshot_date=[date(2018, 4, 1), None] * (n // 2),
        unknown_customer=rng.random(n) < 0.5, unknown_terminal=rng.random(n) < 0.5,
        scored_at_us=1_700_000_000_123_456,
    )
    values = score_values(columns)
    validator = jsonschema.Draft202012Validator(score_json_schema())
    for i, value in enumerate(values):
        record = {
            "transaction_id": int(columns.transaction_id[i]), "customer_id": int(columns.customer_id[i]),
            "terminal_id": int(columns.terminal_id[i]), "event_time": int(columns.event_time_us[i]),
            "score": float(columns.score[i]), "model_name": columns.model_name, "model_version": "12",
            "feature_snapshot_date": columns.feature_snapshot_date[i],
            "unknown_customer": bool(columns.unknown_customer[i]),
            "unknown_terminal": bool(columns.unknown_terminal[i]), "scored_at": columns.scored_at_us,
        }
        assert value == event_line(record, SCORE_EVENT)
        assert not list(validator.iter_errors(json.loads(value)))
    micros = np.array([0, 1, 999_999, -1, 1_522_540_800_000_000, 253_402_300_799_999_999])
    assert timestamp_texts(micros) == [format_timestamp_us(int(m)) for m in micros]


def test_fresh_fields_log_the_served_values_and_as_of_times_as_the_contract_serialiser_writes_them() -> None:
    """score_event v3: the served fresh values as a JSON object (whole numbers as integers, so
    the text of a count equals the offline row's) and the stored rows' as-of times (null when
    the entity had none stored)."""
    names = FRESH_FEATURE_NAMES
    rng = np.random.default_rng(7)
    n = 6
    fresh = rng.integers(0, 40, (n, len(names))).astype(np.float64)
    fresh[:, 1] = rng.random(n) * 1e3  # a sum with a fraction
    fresh[0, 2] = 0.1 + 0.2  # a float with a long repr
    card_as_of = np.array([-1, 1_522_540_800_000_000, 1, 2, 3, 4])
    terminal_as_of = np.array([1_522_540_800_123_456, -1, 1, 2, 3, 4])
    columns = ScoreColumns(
        np.arange(n), np.arange(n), np.arange(n), np.full(n, 1_522_540_800_000_000), rng.random(n), "m", "1",
        [None] * n, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), 0, fresh_names=names, fresh_values=fresh,
        fresh_card_as_of_us=card_as_of, fresh_terminal_as_of_us=terminal_as_of,
    )
    validator = jsonschema.Draft202012Validator(score_json_schema())
    for i, value in enumerate(score_values(columns)):
        parsed = json.loads(value)
        assert not list(validator.iter_errors(parsed))
        served = json.loads(parsed["fresh_features"])
        assert list(served) == list(names)
        assert [float(v) for v in served.values()] == fresh[i].tolist()
        assert all(isinstance(v, int) for v, x in zip(served.values(), fresh[i], strict=True) if x == int(x))
        record = {
            "transaction_id": i, "customer_id": i, "terminal_id": i, "event_time": 1_522_540_800_000_000,
            "score": float(columns.score[i]), "model_name": "m", "model_version": "1",
            "feature_snapshot_date": None, "unknown_customer": False, "unknown_terminal": False, "scored_at": 0,
            "fresh_features": parsed["fresh_features"],
            "fresh_card_as_of": None if card_as_of[i] < 0 else int(card_as_of[i]),
            "fresh_terminal_as_of": None if terminal_as_of[i] < 0 else int(terminal_as_of[i]),
        }
        assert value == event_line(record, SCORE_EVENT)
    assert json.loads(score_values(columns)[0])["fresh_card_as_of"] is None
    without = score_values(ScoreColumns(np.arange(1), np.arange(1), np.arange(1), np.zeros(1, dtype=np.int64),
                                        np.zeros(1), "m", "1", [None], np.zeros(1, bool), np.zeros(1, bool), 0))
    assert json.loads(without[0])["fresh_features"] is None


def test_scores_must_be_finite() -> None:
    columns = ScoreColumns(np.array([1]), np.array([1]), np.array([1]), np.array([0]),
                           np.array([np.nan]), "m", "1", [None], np.array([False]), np.array([False]), 0)
    with pytest.raises(ValueError, match="NaN"):
        score_values(columns)


def test_offsets_to_commit_and_to_rewind_to() -> None:
    messages = [message(b"x", o, partition=p) for p, o in ((0, 5), (1, 9), (0, 7), (0, 6), (1, 8))]
    assert next_offsets(messages) == {("tx", 0): 8, ("tx", 1): 10}
    assert first_offsets(messages) == {("tx", 0): 5, ("tx", 1): 8}


def test_snapshot_date_is_the_transaction_day_unless_every_feature_is_a_default() -> None:
    micros = np.array([1_523_059_200_000_000, 1_523_145_599_999_999, 1_523_145_600_000_000])
    dates = snapshot_dates(micros, np.array([True, False, False]), np.array([False, True, False]))
    assert dates == [date(2018, 4, 7), date(2018, 4, 7), None]


def test_bulk_latency_histogram_exports_cumulative_buckets() -> None:
    metrics = StreamMetrics()
    metrics.e2e_latency.observe_many(np.array([0.0005, 0.004, 0.004, 7.0, 1e10]), "kafka_timestamp")
    name = "cardscore_stream_end_to_end_latency_seconds"
    assert metrics.value(f"{name}_count", {"clock": "kafka_timestamp"}) == 5
    assert metrics.value(f"{name}_bucket", {"clock": "kafka_timestamp", "le": "0.005"}) == 3
    assert metrics.value(f"{name}_bucket", {"clock": "kafka_timestamp", "le": "10.0"}) == 4
    assert metrics.value(f"{name}_bucket", {"clock": "kafka_timestamp", "le": "+Inf"}) == 5
    assert f'{name}_bucket{{clock="kafka_timestamp",le="0.001"}} 1.0' in generate_latest(metrics.registry).decode()


def test_fresh_feature_series_are_on_metrics_at_zero_before_any_fresh_score() -> None:
    """The dashboard's fresh-features panel reads them whether or not the scorer serves fresh
    features (rate() of a series at zero is 0, of an absent one "no data")."""
    metrics = StreamMetrics()
    text = generate_latest(metrics.registry).decode()
    for entity in ("card", "terminal"):
        assert metrics.value("cardscore_stream_fresh_features_lag_seconds_count", {"entity": entity}) == 0
        assert metrics.value("cardscore_stream_fresh_rows_missing_total", {"entity": entity}) == 0
        assert f'cardscore_stream_fresh_features_lag_seconds_bucket{{entity="{entity}",le="+Inf"}} 0.0' in text
    metrics.fresh_lag.observe_many(np.array([0.5, 2.0]), "card")
    assert metrics.value("cardscore_stream_fresh_features_lag_seconds_count", {"entity": "card"}) == 2


# ------------------------------------------------------------------------------ DLQ size limit

DLQ_LIMIT = 20_000


def record(value: bytes, key: bytes = b"k", headers: list[tuple[str, bytes]] | None = None) -> dlq.DlqRecord:
    from confluent_kafka import Message

    message = Message(topic="tx", partition=1, offset=41, key=key, value=value,
                      headers=headers if headers is not None else [("trace", b"t-1")], timestamp=(1, 5))
    return dlq.dlq_record(Rejected(message, RejectReason.OVERSIZED, "70000 bytes > limit 65536"), "g/i", 0)


def test_a_record_that_fits_is_kept_whole() -> None:
    small = record(b"x" * 1000)
    assert dlq.fit_dlq_record(small, 10_000) is small


def test_a_record_too_large_is_cut_to_fit_and_says_what_was_cut() -> None:
    big = record(b"x" * 50_000)
    cut = dlq.fit_dlq_record(big, DLQ_LIMIT)
    assert dlq.record_bytes(cut.key, cut.value, cut.headers) <= DLQ_LIMIT - dlq.RECORD_OVERHEAD_BYTES
    assert cut.key == b"k" and big.value.startswith(cut.value) and len(cut.value) > 10_000
    assert dlq.header(cut.headers, dlq.TRUNCATED) == "value"
    assert dlq.header(cut.headers, dlq.ORIGINAL_BYTES) == "50000"
    assert dlq.header(cut.headers, dlq.SOURCE_OFFSET) == "41"  # the way to the full original
    assert dlq.original_headers(cut.headers) == [("trace", b"t-1")]
    assert dlq.is_truncated(cut.headers)


def test_huge_original_headers_and_key_are_dropped_when_the_value_alone_cannot_make_room() -> None:
    heavy = record(b"x" * 100, key=b"k" * 30_000, headers=[("blob", b"y" * 30_000)])
    cut = dlq.fit_dlq_record(heavy, DLQ_LIMIT)
    assert dlq.header(cut.headers, dlq.TRUNCATED) == "value,headers,key"
    assert cut.key is None and dlq.original_headers(cut.headers) == []
    assert dlq.header(cut.headers, dlq.REASON) == "oversized"
    reference = dlq.dlq_reference(heavy)
    assert reference.value == b"" and dlq.header(reference.headers, dlq.ORIGINAL_BYTES) == "100"


# ------------------------------------------------------------------------------ duplicate ids


def batch(*items: tuple[int, int, float], partition: int = 0):
    """(offset, transaction id, amount) -> a validated batch of messages of one partition."""
    messages = [
        Message(topic="tx", partition=partition, offset=offset, key=b"3",
                value=json.dumps({**GOOD, "transaction_id": tx, "amount": amount}).encode(), timestamp=(1, 1))
        for offset, tx, amount in items
    ]
    return split_messages(messages, 1 << 16).valid


def remember_all(recent: RecentTransactions, valid) -> None:
    recent.remember(valid, np.arange(len(valid)))


def test_conflicts_are_found_in_the_batch_and_against_the_window() -> None:
    recent = RecentTransactions(window=100)
    first = batch((0, 1, 5.0), (1, 2, 5.0), (2, 1, 6.0), (3, 2, 5.0))
    assert recent.conflicts(first) == {2: "tx[0]@0"}  # id 2 again, same content: a repeat
    remember_all(recent, first.take(np.array([0, 1, 3])))
    later = batch((10, 1, 5.0), (11, 1, 7.0), (12, 3, 1.0))
    assert recent.conflicts(later) == {1: "tx[0]@0"}
    assert recent.conflicts(batch((0, 1, 5.0))) == {}  # the first message itself, read again


def test_a_batch_is_remembered_with_its_own_content_not_the_last_judged_batchs() -> None:
    """The window reuses the digests `conflicts` computed only for that very batch."""
    recent = RecentTransactions(window=100)
    judged = batch((0, 1, 5.0), (1, 2, 5.0))
    assert recent.conflicts(judged) == {}
    remember_all(recent, batch((7, 1, 9.0), (8, 2, 9.0)))  # same ids and length, other content
    assert recent.conflicts(batch((20, 1, 9.0), (21, 2, 5.0))) == {1: "tx[0]@8"}


def test_the_windows_entries_leave_the_garbage_collectors_view() -> None:
    """A full window is scanned by no collection: after one, none of its entries is tracked
    (a NamedTuple or dataclass entry would stay tracked)."""
    import gc

    recent = RecentTransactions(window=1000)
    remember_all(recent, batch(*[(i, i, 1.0) for i in range(200)]))
    gc.collect()
    entries = [entry for window in recent._seen.values() for entry in window.values()]
    assert len(entries) == 200 and not any(gc.is_tracked(entry) for entry in entries)


def test_the_window_is_bounded_per_partition_and_forgotten_on_revocation() -> None:
    recent = RecentTransactions(window=3)
    remember_all(recent, batch(*[(i, i, 1.0) for i in range(10)]))
    remember_all(recent, batch((0, 100, 1.0), partition=1))
    assert len(recent) == 4  # 3 of partition 0 (the newest) + 1 of partition 1
    assert recent.conflicts(batch((20, 9, 2.0))) == {0: "tx[0]@9"}
    assert recent.conflicts(batch((21, 0, 2.0))) == {}  # beyond the window: not caught (documented)
    assert recent.conflicts(batch((5, 100, 2.0))) == {}  # another partition's id: not caught
    recent.forget({("tx", 0)})
    assert len(recent) == 1 and recent.conflicts(batch((22, 9, 2.0))) == {}
    assert RecentTransactions(window=0).conflicts(batch((0, 1, 1.0), (1, 1, 2.0))) == {}  # off
