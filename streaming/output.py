"""Score messages: the `score_event` contract (`schemas.contracts.SCORE_EVENT`) as Kafka records.

Key: the transaction id as a decimal string (duplicates from an at-least-once retry are
identifiable by key). Value: one compact JSON object with the contract's fields in contract
order, byte-identical to the project's one serialiser (`schemas.serialization.event_line`), e.g.

    {"transaction_id":1234,"customer_id":17,"terminal_id":4021,
     "event_time":"2018-04-01T00:07:56Z","score":0.0123,"model_name":"cardscore-fraud",
     "model_version":"3","feature_snapshot_date":"2018-04-01","unknown_customer":false,
     "unknown_terminal":false,"scored_at":"2024-05-02T10:11:12.345678Z","arm":"champion",
     "fallback":false,"shadow_model_version":null,"shadow_score":null}

The release fields (score_event v2) say which arm served the score (champion, canary, or the
rule-based fallback) and carry the shadow model's score beside it; the model name and version,
the arm and the shadow fields may be one value for the batch or one per row.

The fresh-feature fields (score_event v3) log the fresh feature values the score read (a JSON
object in a string field: `"fresh_features":"{\\"card_nb_tx_1h\\":2,...}"`) and the as-of times of
the stored card and terminal events; all three are null when the scorer served none.

Headers: `content-type: application/json`, `schema: score_event.v3` (and
`cardscore.duplicate-conflict` on a flagged duplicate, see `streaming.duplicates`). The JSON Schema is
`score_json_schema()` (`cardscore contracts export` writes it too).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from cardscore.features.fresh_online import fresh_values_json
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
    # score_event v2 (release): a value for the whole batch or one per row; None: null.
    arm: str | Sequence[str | None] | None = None
    fallback: bool | np.ndarray | None = None
    shadow_model_version: str | Sequence[str | None] | None = None
    shadow_score: np.ndarray | None = None  # NaN: null
    # score_event v3 (fresh features): the served values (rows x names, in `fresh_names` order)
    # and the stored rows' as-of times (epoch us; negative: null). None: the batch served none.
    fresh_names: Sequence[str] = ()
    fresh_values: np.ndarray | None = None
    fresh_card_as_of_us: np.ndarray | None = None
    fresh_terminal_as_of_us: np.ndarray | None = None


def score_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a score message's value."""
    return SCORE_EVENT.json_schema()


def score_keys(transaction_id: np.ndarray) -> list[bytes]:
    return [str(t).encode() for t in transaction_id.tolist()]


def score_values(columns: ScoreColumns) -> list[bytes]:
    """The JSON values of the batch's score messages, one per row, in row order.

    Byte-identical to `schemas.serialization.event_line(record, SCORE_EVENT)` (tests check
    it), about six times faster on a batch: the per-batch constants (model, scored_at, and the
    release fields when one value serves the batch) are formatted once and timestamps
    column-wise.
    """
    rows = len(columns.transaction_id)
    booleans = ("false", "true")
    dates = {d: "null" if d is None else _json_text(str(d)) for d in set(columns.feature_snapshot_date)}
    parts: list[str] = []  # the template, field by field
    varying: list[list[str]] = []  # the per-row texts of each "{}" in the template, in order

    def column(name: str, texts: list[str], quoted: bool = False) -> None:
        parts.append(f'"{name}":"{{}}"' if quoted else f'"{name}":{{}}')
        varying.append(texts)

    def field(name: str, value: Any, text: Callable[[Any], str]) -> None:
        """A batch constant baked into the template, or a per-row column."""
        if value is None or isinstance(value, str | bool | np.bool_):
            parts.append(f'"{name}":{_braces(text(value))}')
        else:  # few distinct values (versions, arms): each formatted once
            values = _values(value, rows)
            texts = {v: text(v) for v in set(values)}
            column(name, [texts[v] for v in values])

    column("transaction_id", [str(x) for x in np.asarray(columns.transaction_id, dtype=np.int64).tolist()])
    column("customer_id", [str(x) for x in np.asarray(columns.customer_id, dtype=np.int64).tolist()])
    column("terminal_id", [str(x) for x in np.asarray(columns.terminal_id, dtype=np.int64).tolist()])
    column("event_time", timestamp_texts(np.asarray(columns.event_time_us, dtype=np.int64)), quoted=True)
    # float32 from the booster, widened exactly: the JSON carries the same number the batch
    # scorer stores as a double (repr is what json.dumps writes).
    column("score", [repr(x) for x in _finite(np.asarray(columns.score, dtype=np.float64)).tolist()])
    field("model_name", columns.model_name, _json_or_null)
    field("model_version", columns.model_version, _json_or_null)
    column("feature_snapshot_date", [dates[d] for d in columns.feature_snapshot_date])
    column("unknown_customer", [booleans[x] for x in np.asarray(columns.unknown_customer, dtype=bool).tolist()])
    column("unknown_terminal", [booleans[x] for x in np.asarray(columns.unknown_terminal, dtype=bool).tolist()])
    parts.append(f'"scored_at":"{format_timestamp_us(columns.scored_at_us)}"')
    field("arm", columns.arm, _json_or_null)
    field("fallback", columns.fallback, _bool_or_null)
    field("shadow_model_version", columns.shadow_model_version, _json_or_null)
    shadow = _score_or_none(columns.shadow_score)
    if shadow is None:
        parts.append('"shadow_score":null')
    else:  # column-wise, like the score; NaN (no shadow for the row) is null
        missing = np.isnan(shadow)
        _finite(np.where(missing, 0.0, shadow))
        column("shadow_score", ["null" if m else repr(x) for x, m in zip(shadow.tolist(), missing.tolist(), strict=True)])
    if columns.fresh_values is None:
        parts.append('"fresh_features":null,"fresh_card_as_of":null,"fresh_terminal_as_of":null')
    else:
        column("fresh_features", fresh_feature_texts(columns.fresh_names, columns.fresh_values))
        column("fresh_card_as_of", _timestamps_or_null(columns.fresh_card_as_of_us, rows))
        column("fresh_terminal_as_of", _timestamps_or_null(columns.fresh_terminal_as_of_us, rows))
    fmt = ("{{" + ",".join(parts) + "}}").format
    return [fmt(*row).encode("utf-8") for row in zip(*varying, strict=True)]


def fresh_feature_texts(names: Sequence[str], values: np.ndarray) -> list[str]:
    """Each row's fresh features as the JSON text of the string field holding them
    (`features.fresh_online.fresh_values_json`, the one format of every scorer)."""
    names = list(names)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"fresh values of shape {values.shape} for {len(names)} names")
    _finite(values)
    return [_json_text(fresh_values_json(names, row)) for row in values.tolist()]


def _timestamps_or_null(micros: np.ndarray | None, rows: int) -> list[str]:
    if micros is None:
        return ["null"] * rows
    micros = np.asarray(micros, dtype=np.int64)
    texts = timestamp_texts(np.maximum(micros, 0))
    return [f'"{t}"' if m >= 0 else "null" for t, m in zip(texts, micros.tolist(), strict=True)]


def _values(value: Sequence[Any] | np.ndarray, rows: int) -> list[Any]:
    out = value.tolist() if isinstance(value, np.ndarray) else list(value)
    if len(out) != rows:
        raise ValueError(f"a per-row score field has {len(out)} values for {rows} rows")
    return out


def _json_or_null(value: Any) -> str:
    return "null" if value is None else _json_text(str(value))


def _bool_or_null(value: Any) -> str:
    return "null" if value is None else ("true" if bool(value) else "false")


def _score_or_none(scores: np.ndarray | None) -> np.ndarray | None:
    if scores is None:
        return None
    scores = np.asarray(scores, dtype=np.float64)
    return None if np.isnan(scores).all() else scores


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
    "arm", "fallback", "shadow_model_version", "shadow_score",
    "fresh_features", "fresh_card_as_of", "fresh_terminal_as_of",
)
if tuple(SCORE_EVENT.field_names) != _TEMPLATE_FIELDS:  # pragma: no cover - guards upgrades
    raise ImportError(f"streaming.output is out of date with {schema_id(SCORE_EVENT)}")
