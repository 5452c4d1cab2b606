"""The scoring API's OpenAPI 3.1 document, built from the data contracts.

The request schema is the `transaction_event` contract's JSON Schema and the response the
`score_event` contract's plus the explanation, so the document cannot drift from the
validator or the stream's messages. `cardscore serve openapi` prints it; the committed copy is
docs/openapi/scoring-api.json (a test checks it is current), served at /openapi.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cardscore.features.definitions import MODEL_FEATURES
from cardscore.schemas.contracts import SCORE_EVENT, TRANSACTION_EVENT
from cardscore.schemas.reasons import RejectReason

API_VERSION = "1.0.0"
COMMITTED = Path("docs") / "openapi" / "scoring-api.json"


def _component(schema: dict[str, Any]) -> dict[str, Any]:
    # $id would move the base URI of references inside the document; $schema is implied by
    # the document's jsonSchemaDialect.
    return {k: v for k, v in schema.items() if k not in ("$id", "$schema")}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json({"$ref": "#/components/schemas/Error"})}


def openapi_document(max_batch: int = 100, top_contributions: int = 5) -> dict[str, Any]:
    """The document for a service with these settings (the committed one uses the defaults)."""
    score = _component(SCORE_EVENT.json_schema())
    response = {
        **score,
        "title": "score_response",
        "description": "The stream scorer's score message for the transaction (score_event), "
        "under the same release (arm by card, canary, shadow recorded, fallback when frozen), "
        "plus the features that contributed most to the score.",
        "properties": {
            **score["properties"],
            "contributions": {
                "type": "array",
                "maxItems": top_contributions,
                "items": {"$ref": "#/components/schemas/Contribution"},
                "description": f"up to {top_contributions} features, largest absolute "
                "contribution first (XGBoost pred_contribs, log-odds) of the model that produced "
                "the score (a canary row: the canary's); empty on a fallback score",
            },
            "bias": {"type": ["number", "null"], "description": "the contributions' baseline (log-odds): "
                     "bias + every feature's contribution = logit(score); null on a fallback score "
                     "(the rules have no contributions)"},
        },
        "required": [*score["required"], "contributions", "bias"],
    }
    transaction = {"$ref": "#/components/schemas/TransactionEvent"}
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "cardscore scoring API",
            "version": API_VERSION,
            "description": "Synchronous fraud scores for card transactions: the contract, online "
            "features and champion model of the stream scorer, one transaction or a small batch "
            "per request.",
        },
        "paths": {
            "/v1/score": {
                "post": {
                    "operationId": "score",
                    "summary": "Score one transaction (an object) or a batch (an array)",
                    "requestBody": {
                        "required": True,
                        "content": _json({"oneOf": [
                            transaction,
                            {"type": "array", "items": transaction, "minItems": 1, "maxItems": max_batch},
                        ]}),
                    },
                    "responses": {
                        "200": {
                            "description": "The score of each transaction: an object for an object, "
                            "an array in request order for an array",
                            "content": _json({"oneOf": [
                                {"$ref": "#/components/schemas/ScoreResponse"},
                                {"type": "array", "items": {"$ref": "#/components/schemas/ScoreResponse"}},
                            ]}),
                        },
                        "413": _error("The body is larger than serving.max_body_bytes"),
                        "422": _error("Invalid input: every refused transaction with its index, "
                                      "reason code and detail; nothing of the request was scored"),
                        "503": _error("Not ready (no model or online features loaded yet) or the "
                                      "online store cannot be read: nothing was scored (fail closed)"),
                    },
                }
            },
            "/healthz": {"get": {
                "operationId": "healthz", "summary": "The process is up",
                "responses": {"200": {"description": "alive", "content": _json({"$ref": "#/components/schemas/Health"})}},
            }},
            "/readyz": {"get": {
                "operationId": "readyz", "summary": "A model (or, frozen, the fallback rules) and the "
                "online features are loaded",
                "responses": {
                    "200": {"description": "ready to score", "content": _json({"$ref": "#/components/schemas/Readiness"})},
                    "503": {"description": "not ready", "content": _json({"$ref": "#/components/schemas/Readiness"})},
                },
            }},
            "/metrics": {"get": {
                "operationId": "metrics", "summary": "Prometheus metrics (cardscore_serve_*)",
                "responses": {"200": {"description": "text exposition format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}},
            }},
        },
        "components": {"schemas": {
            "TransactionEvent": _component(TRANSACTION_EVENT.json_schema()),
            "ScoreResponse": response,
            "Contribution": {
                "type": "object",
                "properties": {
                    "feature": {"type": "string", "enum": list(MODEL_FEATURES)},
                    "value": {"type": ["number", "null"], "description": "the feature's model input"},
                    "contribution": {"type": "number", "description": "log-odds"},
                },
                "required": ["feature", "value", "contribution"],
            },
            "Error": {
                "type": "object",
                "properties": {
                    "error": {"type": "string", "enum": ["invalid_request", "payload_too_large", "not_ready",
                                                         "online_store_unavailable"]},
                    "detail": {"type": "string"},
                    "rejections": {"type": "array", "items": {"$ref": "#/components/schemas/Rejection"}},
                },
                "required": ["error", "detail"],
            },
            "Rejection": {
                "type": "object",
                "properties": {
                    "index": {"type": ["integer", "null"], "minimum": 0,
                              "description": "position in the batch; null for the body or a single object"},
                    "reason": {"type": "string", "enum": [r.value for r in RejectReason]},
                    "detail": {"type": "string"},
                },
                "required": ["index", "reason", "detail"],
            },
            "Health": {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]},
            "Readiness": {
                "type": "object",
                "properties": {
                    "ready": {"type": "boolean"},
                    "model": {"type": ["object", "null"]},
                    "release": {"type": "object", "description": "on the champion alias: what serves "
                                "(champion, canary share, shadow), whether the fallback rules do and why"},
                    "online_features": {"type": ["object", "null"]},
                },
                "required": ["ready", "model", "online_features"],
            },
        }},
    }


def openapi_text(document: dict[str, Any] | None = None) -> str:
    """The document as committed: indented, keys in build order, a final newline."""
    return json.dumps(document or openapi_document(), indent=2) + "\n"
