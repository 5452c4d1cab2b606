"""Score messages: the `score_event` contract (`schemas.contracts.SCORE_EVENT`) as Kafka records.

Key: the transaction id as a decimal string (duplicates from an at-least-once retry are
identifiable by key). Value: one compact JSON object with the contract's fields in contract
order, byte-identical to the project's one serialiser (`schemas.serialization.event_line`), e.g.

    {"transaction_id":1234,"customer_id":17,"terminal_id":4021,
     "event_time":"2018-04-01T00:07:56Z","score":0.0123,"model_name":"cardscore-fraud",
     "model_version":"3","feature_snapshot_date":"2018-04-01","unknown_customer":false,
     "unknown_terminal":false,"scored_at":"2024-05-02T10:11:12.345678Z"}

Headers: `content-type: application/json`, `schema: score_event.v1` (and
`cardscore.duplicate-conflict` on a flagged duplicate, see `streaming.duplicates`). The JSON Schema is
`score_json_schema()` (`cardscore contracts export` writes it too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from cardscore.schemas.contracts import SCORE_EVENT
from cardscore.schemas.serialization import schema_id
from cardscore.schemas.timestamps import format_timestamp_us

SCORE_HEADERS = [
    ("content-type", b"application/json"),
    ("schema", schema_id(SCORE_EVENT).encode()),
]
# On the score of a transaction id seen before with other content, when the duplicate policy
# is `score_flagged` (streaming.duplicates): where the first message with that id is.
DUPLICATE_CONFLICT_HEADER = "cardscore.duplicate-conflict"


@dataclass(frozen=True)
class ScoreColumns:
    """Everything a batch's score messages carry, as columns of equal length."""

    transaction_id: np.ndarray
    customer_id: np.ndarray
    terminal_id: np.ndarray
    event_time_us: np.ndarray
    score: np.ndarray
    model_name: str
    model_version: str
    feature_snapshot_date: Sequence[date | None]
    unknown_customer: np.ndarray
    unknown_terminal: np.ndarray
    scored_at_us: int


def score_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a score message's value."""
    return SCORE_EVENT.json_schema()


def score_keys(transaction_id: np.ndarray) -> list[bytes]:
    return [str(t).encode() for t in transaction_id.tolist()]


def score_values(columns: ScoreColumns) -> list[bytes]:
    """The JSON values of the batch's score messages, one per row, in row order.

    Byte-identical to `schemas.serialization.event_line(record, SCORE_EVENT)` (tests check
    it), about six times faster on a batch: the per-batch constants (model, scored_at) are
    formatted once and timestamps column-wise.
    """
    template = (
        '{{"transaction_id":{},"customer_id":{},"terminal_id":{},"event_time":"{}","score":{},'
        f'"model_name":{_braces(_json_text(columns.model_name))},'
        f'"model_version":{_braces(_json_text(columns.model_version))},'
        '"feature_snapshot_date":{},"unknown_customer":{},"unknown_terminal":{},'
        f'"scored_at":"{format_timestamp_us(columns.scored_at_us)}"}}}}'
    )
    fmt = template.format
    dates = {d: "null" if d is None else _json_text(str(d)) for d in set(columns.feature_snapshot_date)}
    booleans = ("false", "true")
    rows = zip(
        np.asarray(columns.transaction_id, dtype=np.int64).tolist(),
        np.asarray(columns.customer_id, dtype=np.int64).tolist(),
        np.asarray(columns.terminal_id, dtype=np.int64).tolist(),
        timestamp_texts(np.asarray(columns.event_time_us, dtype=np.int64)),
        # float32 from the booster, widened exactly: the JSON carries the same number the
        # batch scorer stores as a double (repr is what json.dumps writes).
        [repr(x) for x in _finite(np.asarray(columns.score, dtype=np.float64)).tolist()],
        [dates[d] for d in columns.feature_snapshot_date],
        [booleans[x] for x in np.asarray(columns.unknown_customer, dtype=bool).tolist()],
        [booleans[x] for x in np.asarray(columns.unknown_terminal, dtype=bool).tolist()],
        strict=True,
    )
    return [fmt(*row).encode("utf-8") for row in rows]


def timestamp_texts(micros: np.ndarray) -> list[str]:
    """RFC 3339 UTC texts of epoch microseconds, equal to `format_timestamp_us` element-wise."""
    seconds = np.floor_divide(micros, 1_000_000)
    texts = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s").astype(object)
    fractional = np.flatnonzero(micros % 1_000_000)
    if fractional.size:
        texts[fractional] = np.datetime_as_string(micros[fractional].astype("datetime64[us]"), unit="us")
    return [t + "Z" for t in texts.tolist()]


def _finite(scores: np.ndarray) -> np.ndarray:
    if not np.isfinite(scores).all():
        raise ValueError("the model produced a NaN or infinite score")
    return scores


def _json_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


# The template above spells the contract's fields out; a contract change must change it too.
_TEMPLATE_FIELDS = (
    "transaction_id", "customer_id", "terminal_id", "event_time", "score", "model_name",
    "model_version", "feature_snapshot_date", "unknown_customer", "unknown_terminal", "scored_at",
)
if tuple(SCORE_EVENT.field_names) != _TEMPLATE_FIELDS:  # pragma: no cover - guards upgrades
    raise ImportError(f"streaming.output is out of date with {schema_id(SCORE_EVENT)}")
