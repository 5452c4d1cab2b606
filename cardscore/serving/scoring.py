"""A scoring request, from body bytes to response objects: parse, validate, read, predict, explain.

Pure of HTTP: the app (`cardscore.serving.app`) maps `BadRequest` to 422 and
`OnlineStoreUnavailable` / `ModelUnavailable` to 503.

Body: one `transaction_event` object, or a JSON array of 1..max_batch of them. Every object is
checked by `schemas.validation.validate_object` against `TRANSACTION_EVENT`, the checks the
batch ingest and the stream scorer run, with the same reason codes; a batch with any invalid
transaction is refused whole, naming each one (index, reason, detail). Unknown fields are
ignored, as everywhere. The body is a JSON document, not a landing line: whitespace, CRLF
included, is allowed, and its size limit is `serving.max_body_bytes` (413), not a line's.

Response per transaction: the score message the stream scorer produces (`score_event`, same
fields and values) plus `contributions` (the top features by absolute XGBoost contribution, in
log-odds) and `bias` (the contributions' baseline), so an analyst sees why.

The release applies as in the stream and batch scorers (`cardscore.model.release.ServingPlan`
through `cardscore.model.served_release.score_batch`): each row's arm by its card, the canary's
score on canary cards, the shadow's score recorded (`shadow_score`, never acted on), and the
flagged rule-based fallback when frozen. A row's contributions come from the booster that
produced its score (a canary row's from the canary's); a fallback row has none
(`contributions: []`, `bias: null`): the rules are not a tree model, and the score names the
rules' version (`model_version: rules-1`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cardscore.features.definitions import MODEL_FEATURES
from cardscore.features.feature_sets import column_indexes
from cardscore.features.fresh_online import FreshRows, fresh_values_json, served_matrix
from cardscore.features.online_tables import OnlineStoreUnavailable
from cardscore.model.explain import top_contributions
from cardscore.model.release import ARM_FALLBACK
from cardscore.model.served_release import booster_of, score_batch, served_layout
from cardscore.schemas.contracts import TRANSACTION_EVENT
from cardscore.schemas.reasons import RejectReason
from cardscore.schemas.timestamps import format_timestamp_us
from cardscore.schemas.validation import Rejection, parse_json, validate_object

if TYPE_CHECKING:
    from cardscore.features.fresh_online import FreshOnlineFeatures
    from cardscore.features.online_reader import OnlineFeatureReader
    from cardscore.model.served_release import ServedRelease
    from cardscore.model.watcher import LoadedModel

STAGES = ("validate", "lookup", "predict", "explain", "respond")


@dataclass(frozen=True)
class Problem:
    """One refused transaction of a request (`index` None: the body as a whole)."""

    index: int | None
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "detail": self.detail}


class BadRequest(ValueError):
    """The request cannot be scored as sent (HTTP 422)."""

    def __init__(self, detail: str, problems: Sequence[Problem]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = list(problems)

    def to_dict(self) -> dict[str, Any]:
        return {"error": "invalid_request", "detail": self.detail,
                "rejections": [p.to_dict() for p in self.problems]}


@dataclass(frozen=True)
class ParsedRequest:
    records: list[dict[str, Any]]  # validated transaction records (event_time: epoch micros)
    single: bool  # the body was one object (answer with one object), else an array


def parse_request(body: bytes, max_batch: int) -> ParsedRequest:
    """Validated transactions of a request body, or `BadRequest` with every reason."""
    if body.startswith(b"\xef\xbb\xbf"):  # as the validator says of a line (schemas.validation)
        raise BadRequest("the body is not plain UTF-8 JSON",
                         [Problem(None, RejectReason.ENCODING.value, "starts with a UTF-8 byte-order mark")])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the body is not UTF-8",
                         [Problem(None, RejectReason.ENCODING.value, f"not valid UTF-8 at byte {exc.start}")]) from None
    document = parse_json(text)
    if isinstance(document, Rejection):
        raise BadRequest("the body is not JSON", [Problem(None, document.reason.value, document.detail)])
    if isinstance(document, dict):
        items, single = [document], True
    elif isinstance(document, list):
        items, single = document, False
        if not 1 <= len(items) <= max_batch:
            raise BadRequest(f"a batch holds 1 to {max_batch} transactions, this one {len(items)}", [])
    else:
        raise BadRequest("the body is neither a transaction nor an array of them",
                         [Problem(None, RejectReason.NOT_AN_OBJECT.value,
                                  f"top level is {type(document).__name__}, not an object or array")])
    records: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        result = validate_object(item, TRANSACTION_EVENT)
        if isinstance(result, Rejection):
            problems.append(Problem(None if single else index, result.reason.value, result.detail))
        else:
            records.append(result)
    if problems:
        what = "the transaction" if single else f"{len(problems)} of {len(items)} transactions"
        raise BadRequest(f"{what} broke the transaction_event contract", problems)
    return ParsedRequest(records, single)


@dataclass
class ScoredBatch:
    """The response objects of a request, and what the metrics count."""

    results: list[dict[str, Any]]
    model_version: str
    unknown_customers: int
    unknown_terminals: int
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    arms: dict[str, int] = field(default_factory=dict)  # rows per release arm


def score_records(
    records: Sequence[dict[str, Any]],
    reader: OnlineFeatureReader,
    model: LoadedModel | ServedRelease,
    top_k: int,
    clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    fresh: FreshOnlineFeatures | None = None,
) -> ScoredBatch:
    """Score validated transactions with one feature read (and, with `fresh`, one read of the
    stored fresh-feature events per entity kind), one plan call (a predict per model the
    release serves) and one explain call per arm."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    n = len(records)
    transaction_id = np.fromiter((r["transaction_id"] for r in records), np.int64, n)
    customer_id = np.fromiter((r["customer_id"] for r in records), np.int64, n)
    terminal_id = np.fromiter((r["terminal_id"] for r in records), np.int64, n)
    amount = np.fromiter((r["amount"] for r in records), np.float64, n)
    event_time_us = np.fromiter((r["event_time"] for r in records), np.int64, n)
    rows = reader.read(customer_id, terminal_id, amount, event_time_us)
    fresh_rows = None
    if fresh is not None:
        try:
            fresh_rows = fresh.read(transaction_id, customer_id, terminal_id, amount, event_time_us)
        except Exception as exc:  # the store behind them: fail closed, as for the snapshot rows
            raise OnlineStoreUnavailable(f"the fresh features cannot be read: {type(exc).__name__}: {exc}") from exc
    seconds["lookup"] = _lap(started)
    started = time.perf_counter()
    layout = served_layout(model)
    matrix = served_matrix(rows.matrix, fresh_rows, layout)
    scored = score_batch(model, matrix, customer_id)  # the release's arms, by card
    scores = scored.score
    if not np.isfinite(scores).all():
        raise ValueError("the model produced a NaN or infinite score")
    seconds["predict"] = _lap(started)
    started = time.perf_counter()
    top: list[list[Any]] = [[] for _ in range(n)]
    bias: list[float | None] = [None] * n
    for arm in dict.fromkeys(scored.arm.tolist()):  # each arm's rows by its own booster
        booster = booster_of(model, arm)
        if arm == ARM_FALLBACK or booster is None:
            continue  # the rules: no contributions, no bias
        rows_of = np.flatnonzero(scored.arm == arm)
        if top_k:
            names = tuple(booster.feature_names or MODEL_FEATURES)
            columns = column_indexes(names, layout)  # the booster's own columns of the plan's matrix
            arm_matrix = matrix if columns is None else matrix[:, columns]
            arm_matrix = arm_matrix if len(rows_of) == n else arm_matrix[rows_of]  # no copy on one arm
            arm_top, arm_bias = top_contributions(booster, arm_matrix, top_k, names)
        else:
            arm_top, arm_bias = [[] for _ in rows_of], np.zeros(len(rows_of))
        for j, i in enumerate(rows_of):
            top[i], bias[i] = arm_top[j], float(arm_bias[j])
    seconds["explain"] = _lap(started)
    started = time.perf_counter()
    dates = rows.snapshot_dates(event_time_us)
    scored_at = format_timestamp_us(clock_us())
    results = []
    for i in range(n):
        results.append({
            # the score_event contract's fields, in its order, as the stream writes them
            "transaction_id": int(transaction_id[i]),
            "customer_id": int(customer_id[i]),
            "terminal_id": int(terminal_id[i]),
            "event_time": format_timestamp_us(int(event_time_us[i])),
            "score": float(scores[i]),
            "model_name": scored.model_name[i],
            "model_version": scored.model_version[i],
            "feature_snapshot_date": None if dates[i] is None else dates[i].isoformat(),
            "unknown_customer": not bool(rows.customer_known[i]),
            "unknown_terminal": not bool(rows.terminal_known[i]),
            "scored_at": scored_at,
            # score_event v2's release fields, per row as the stream writes them
            "arm": scored.arm[i],
            "fallback": bool(scored.fallback[i]),
            "shadow_model_version": scored.shadow_model_version[i],
            "shadow_score": None if np.isnan(scored.shadow_score[i]) else float(scored.shadow_score[i]),
            # score_event v3's fresh-feature fields, as the stream writes them
            **fresh_fields(fresh_rows, i),
            "contributions": [
                {"feature": c.feature, "value": c.value, "contribution": c.contribution} for c in top[i]
            ],
            "bias": bias[i],
        })
    seconds["respond"] = _lap(started)
    return ScoredBatch(results, model.version, int((~rows.customer_known).sum()),
                       int((~rows.terminal_known).sum()), seconds, scored.arm_counts())


def fresh_fields(fresh: FreshRows | None, i: int) -> dict[str, Any]:
    """Row i's score_event v3 fields: the served fresh values and the stored rows' as-of times."""
    if fresh is None:
        return {"fresh_features": None, "fresh_card_as_of": None, "fresh_terminal_as_of": None}

    def as_of(us: int) -> str | None:
        return None if us < 0 else format_timestamp_us(us)

    return {"fresh_features": fresh_values_json(fresh.names, fresh.matrix[i].tolist()),
            "fresh_card_as_of": as_of(int(fresh.card_as_of_us[i])),
            "fresh_terminal_as_of": as_of(int(fresh.terminal_as_of_us[i]))}


def _lap(started: float) -> float:
    return time.perf_counter() - started
