"""The scoring API over real HTTP: scores, explanations, bad input, readiness, hot swap, outages.

The real app under uvicorn on a free loopback port, the real Feast SQLite online store and
MLflow registry of the stream tests' world, the real champion booster."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from cardscore.core import registry
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.model.explain import contributions
from cardscore.model.scoring import predict_matrix
from cardscore.schemas.contracts import SCORE_EVENT
from cardscore.schemas.reasons import RejectReason
from cardscore.services.process import wait_until
from cardscore.serving.openapi import openapi_document
from tests.serving.conftest import ServingWorld, wire
from tests.streaming import world
from tests.streaming.conftest import own_model
from tests.support.redis import RedisServer

pytestmark = pytest.mark.engine  # a started server, a registry, fitted models

GOOD = {"transaction_id": 900_001, "event_time": "2018-04-07T10:00:00Z", "customer_id": 3,
        "terminal_id": 4, "amount": 25.5}


def body(**changes: object) -> bytes:
    return json.dumps({k: v for k, v in {**GOOD, **changes}.items() if v is not ...}).encode()


# One body per reason code a request can meet (the contract's record checks, as for a landing
# line or a Kafka message, plus the body's own encoding and syntax).
BAD: list[tuple[str, bytes, RejectReason]] = [
    ("not json", b"{not json", RejectReason.MALFORMED_JSON),
    ("empty body", b"", RejectReason.MALFORMED_JSON),
    ("a number", b"42", RejectReason.NOT_AN_OBJECT),
    ("array of a string", b'["x"]', RejectReason.NOT_AN_OBJECT),
    ("missing amount", body(amount=...), RejectReason.MISSING_FIELD),
    ("null customer", body(customer_id=None), RejectReason.NULL_FIELD),
    ("string id", body(customer_id="12"), RejectReason.WRONG_TYPE),
    ("float id", body(terminal_id=4.0), RejectReason.WRONG_TYPE),
    ("boolean amount", body(amount=True), RejectReason.WRONG_TYPE),
    ("NaN amount", body(amount=...)[:-1] + b', "amount": NaN}', RejectReason.NOT_FINITE),
    ("negative amount", body(amount=-5.0), RejectReason.OUT_OF_RANGE),
    ("negative id", body(transaction_id=-1), RejectReason.OUT_OF_RANGE),
    ("offset timestamp", body(event_time="2018-04-07T10:00:00+02:00"), RejectReason.BAD_TIMESTAMP),
    ("impossible date", body(event_time="2018-02-30T00:00:00Z"), RejectReason.BAD_TIMESTAMP),
    ("byte-order mark", b"\xef\xbb\xbf" + body(), RejectReason.ENCODING),
    ("latin-1 bytes", b'{"transaction_id": 7, "note": "caf\xe9"}', RejectReason.ENCODING),
]


def expected(serving_world: ServingWorld, settings, records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    matrix = world.expected_matrix(records, serving_world.customers, serving_world.terminals)
    booster = registry.load_booster(settings, registry.resolve_alias(settings))
    return matrix, predict_matrix(booster, matrix)


def test_scores_one_transaction_and_a_batch_with_their_top_contributions(serving_world, serve) -> None:
    settings = serving_world.settings()
    api = serve(settings)
    assert api.wait_ready()["model"]["version"] == serving_world.version
    records = world.transactions(12, seed=4, first_id=5_000)  # unknown entities included
    matrix, scores = expected(serving_world, settings, records)
    booster = registry.load_booster(settings, registry.resolve_alias(settings))
    full = contributions(booster, matrix)

    one = api.post(wire(records[0]))
    assert one.status_code == 200, one.text
    batch = api.post([wire(r) for r in records])
    assert batch.status_code == 200, batch.text
    results = batch.json()
    assert isinstance(one.json(), dict) and isinstance(results, list) and len(results) == len(records)
    assert {k: v for k, v in one.json().items() if k != "scored_at"} == {
        k: v for k, v in results[0].items() if k != "scored_at"}
    event_schema = SCORE_EVENT.json_schema()
    for i, (record, result) in enumerate(zip(records, results, strict=True)):
        assert result["transaction_id"] == record["transaction_id"]
        assert result["event_time"] == wire(record)["event_time"]
        assert result["score"] == float(scores[i])  # bit for bit: same features, same booster
        assert result["model_version"] == serving_world.version
        customer_known = record["customer_id"] in set(serving_world.customers["customer_id"])
        terminal_known = record["terminal_id"] in set(serving_world.terminals["terminal_id"])
        assert (result["unknown_customer"], result["unknown_terminal"]) == (not customer_known, not terminal_known)
        assert result["feature_snapshot_date"] == (world.DAY.isoformat() if customer_known or terminal_known else None)
        jsonschema.validate({k: result[k] for k in SCORE_EVENT.field_names}, event_schema)
        # The top 5 contributions are the 5 largest of the model's own, with the input values;
        # with the bias, all of them add up to the score's log-odds.
        top = result["contributions"]
        assert len(top) == 5
        order = np.argsort(-np.abs(full[i, :-1]), kind="stable")[:5]
        assert [c["feature"] for c in top] == [MODEL_FEATURES[j] for j in order]
        assert [c["value"] for c in top] == [float(matrix[i, j]) for j in order]
        assert [c["contribution"] for c in top] == pytest.approx(full[i, order].tolist())
        logit = math.log(result["score"] / (1 - result["score"]))
        assert result["bias"] + full[i, :-1].sum() == pytest.approx(logit, abs=1e-4)
    assert any(r["unknown_customer"] for r in results) and not all(r["unknown_customer"] for r in results)

    metrics = api.get("/metrics").text
    assert "cardscore_serve_transactions_scored_total 13.0" in metrics
    assert 'cardscore_serve_requests_total{endpoint="/v1/score",status="200"} 2.0' in metrics
    for stage in ("validate", "lookup", "predict", "explain", "respond"):
        assert f'cardscore_serve_stage_latency_seconds_count{{stage="{stage}"}} 2.0' in metrics
    # The full collection that freezes the start-up heap once ready is timed (gc_pause_seconds).
    def full_collections() -> float:
        name = 'cardscore_serve_gc_pause_seconds_count{generation="2"} '
        return float(next(line for line in api.get("/metrics").text.splitlines() if line.startswith(name))
                     .removeprefix(name))

    wait_until(lambda: full_collections() >= 1, 30, what="a full collection timed once ready")
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/openapi.json").json() == openapi_document()


def test_bad_input_gets_422_with_the_contracts_reason_and_nothing_is_scored(serving_world, serve) -> None:
    settings = serving_world.settings(serving={"max_batch": 4, "max_body_bytes": 4096})
    api = serve(settings)
    api.wait_ready()
    # Not here, unlike a landing line or a message: a CR (JSON whitespace in a document), an
    # oversized line (a body's limit is serving.max_body_bytes: 413 below).
    for name, raw, reason in BAD:
        response = api.post(raw, raw=True)
        assert response.status_code == 422, (name, response.text)
        answer = response.json()
        assert answer["error"] == "invalid_request" and answer["rejections"][0]["reason"] == reason.value, name
        # an array body is a batch: its first element is the one refused
        assert answer["rejections"][0]["index"] == (0 if raw.startswith(b"[") else None), name
    good = dict(GOOD)
    bad_amount = {**GOOD, "amount": -5.0}
    no_terminal = {k: v for k, v in GOOD.items() if k != "terminal_id"}
    response = api.post([good, bad_amount, good, no_terminal])
    assert response.status_code == 422
    assert [(r["index"], r["reason"]) for r in response.json()["rejections"]] == [
        (1, RejectReason.OUT_OF_RANGE.value), (3, RejectReason.MISSING_FIELD.value)]
    assert api.post([]).status_code == 422
    assert api.post([good] * 5).status_code == 422  # over max_batch
    too_big = api.post({**GOOD, "note": "x" * 5000})
    assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"
    assert api.metrics.value("cardscore_serve_transactions_scored_total") == 0
    assert api.metrics.value("cardscore_serve_transactions_rejected_total", {"reason": "out_of_range"}) >= 2
    assert api.post(good).status_code == 200  # unknown fields are ignored, CRLF is whitespace
    assert api.post(b'{"transaction_id": 1,\r\n "event_time": "2018-04-07T10:00:00Z", "customer_id": 1,'
                    b' "terminal_id": 2, "amount": 3.0}', raw=True).status_code == 200


def test_not_ready_until_a_champion_exists_then_the_alias_is_followed(serving_world, serve) -> None:
    settings = own_model(serving_world.settings())
    api = serve(settings)
    assert api.get("/healthz").status_code == 200
    response = api.get("/readyz")
    assert response.status_code == 503 and response.json()["model"] is None
    refused = api.post(GOOD)
    assert refused.status_code == 503 and refused.json()["error"] == "not_ready"
    assert refused.headers["retry-after"] == "1"

    first = world.register(settings, world.booster(seed=11))
    assert api.wait_ready()["model"]["version"] == first
    record = world.transactions(1, seed=8, first_id=7_000)[0]
    assert api.post(wire(record)).json()["model_version"] == first

    second = world.register(settings, world.booster(seed=12))
    matrix = world.expected_matrix([record], serving_world.customers, serving_world.terminals)
    new_score = float(predict_matrix(world.booster(seed=12), matrix)[0])
    deadline_response = None
    for _ in range(600):  # the alias is polled every 0.2 s: the swap shows within seconds
        deadline_response = api.post(wire(record)).json()
        if deadline_response["model_version"] == second:
            break
        api.state._stop.wait(0.05)  # poll interval of the condition
    assert deadline_response["model_version"] == second
    assert deadline_response["score"] == new_score
    assert api.metrics.value("cardscore_serve_model_swaps_total") >= 1


@pytest.mark.parametrize("reader", ["direct", "snapshot"])
def test_online_store_outage_fails_closed_with_direct_reads_and_is_absorbed_by_the_snapshot(
    serving_world, serve, tmp_path: Path, reader: str
) -> None:
    """A real Redis online store holding the world's rows is stopped while the API runs, then
    started again (empty, as after a crash) and refilled."""
    with RedisServer(tmp_path) as redis_server:
        settings = serving_world.settings(
            feast={"online_store": "redis", "redis_connection_string": redis_server.address,
                   "registry": str(tmp_path / "registry.db")},
            features={"online_reader": reader, "online_snapshot_check_seconds": 0.1})
        world.fill_online_store(settings)
        api = serve(settings)
        api.wait_ready()
        record = wire(world.transactions(1, seed=2, first_id=9_000)[0])
        before = api.post(record)
        assert before.status_code == 200 and not before.json()["unknown_customer"]
        redis_server.stop()
        during = api.post(record)
        up = {"dependency": "online_store"}
        if reader == "direct":
            assert during.status_code == 503, during.text
            assert during.json()["error"] == "online_store_unavailable" and during.headers["retry-after"] == "1"
            assert api.metrics.value("cardscore_serve_dependency_up", up) == 0
        else:
            assert during.status_code == 200
            assert during.json()["score"] == before.json()["score"]
            for _ in range(600):  # the snapshot's watcher notices within its check interval
                if api.metrics.value("cardscore_serve_dependency_up", up) == 0:
                    break
                api.state._stop.wait(0.05)  # poll interval of the condition
            assert api.metrics.value("cardscore_serve_dependency_up", up) == 0
            assert api.get("/readyz").status_code == 200
        redis_server.start()
        world.fill_online_store(settings)
        after = api.post(record)
        assert after.status_code == 200 and after.json()["score"] == before.json()["score"]
