"""The committed OpenAPI document is the one the code builds (fast tier: no server)."""

from __future__ import annotations

import json
from pathlib import Path

from cardscore.schemas.contracts import TRANSACTION_EVENT
from cardscore.serving.openapi import COMMITTED, openapi_document, openapi_text

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_document_is_current() -> None:
    committed = (REPO / COMMITTED).read_text()
    assert committed == openapi_text(openapi_document()), (
        f"{COMMITTED} is stale: regenerate it with `cardscore serve --openapi > {COMMITTED}`")


def test_the_request_schema_is_the_transaction_contract() -> None:
    document = json.loads((REPO / COMMITTED).read_text())
    schema = document["components"]["schemas"]["TransactionEvent"]
    contract = TRANSACTION_EVENT.json_schema()
    assert schema["properties"] == contract["properties"] and schema["required"] == contract["required"]
    body = document["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][1]["maxItems"] == 100
