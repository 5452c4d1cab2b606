"""The two steps of the streaming fresh-feature pipeline, as pure processors (no broker).

features/README.md ("Who computes what online") has the design; in short:

* `CardStep` (a consumer group over the transactions and labels topics, both keyed by card and
  co-partitioned): holds its cards' events, answers nothing itself, and
  - forwards each new transaction, and each verdict of a transaction it holds, **re-keyed by
    terminal** (`Forward`, the records of the repartition topic): a label names only its
    transaction id, and only the card's step knows that transaction's terminal and time;
  - exports the events of every card it changed (`EntityEvents`), for the online store.
* `TerminalStep` (a consumer group over the repartition topic): holds its terminals' events
  and exports the events of every terminal it changed.

Both hold a `FreshState` restricted to their entity's features, so duplicates are dropped by
transaction id and repeated verdicts change nothing: a step fed the same events twice (a
restart from older offsets, a replayed day) ends in the same state and forwards nothing new
for a repeated transaction (a repeated verdict is forwarded again and is a no-op downstream).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from cardscore.features.fresh import ALLOWED_LATENESS_US, Entity, amount_micros, features_of
from cardscore.features.fresh_events import EntityEvents
from cardscore.features.fresh_state import FreshState

FORWARD_SCHEMA = "fresh_forward.v1"  # the repartition topic's `schema` header


@dataclass(frozen=True)
class Forward:
    """A record of the repartition topic: a transaction, or one verdict on it, with what the
    terminal step needs (its terminal, event time and amount in micro-units). Key: terminal."""

    transaction_id: int
    card: int
    terminal: int
    us: int  # the transaction's event time
    amount_us: int
    reported_us: int | None = None  # a verdict: its report time ...
    is_fraud: bool | None = None  # ... and what it says
    sent_ms: int | None = None  # the source message's timestamp (freshness is measured from it)

    @property
    def is_verdict(self) -> bool:
        return self.reported_us is not None

    def key(self) -> bytes:
        return str(self.terminal).encode()

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"id": self.transaction_id, "card": self.card, "terminal": self.terminal,
                                "us": self.us, "amount_us": self.amount_us}
        if self.is_verdict:
            data |= {"reported_us": self.reported_us, "is_fraud": bool(self.is_fraud)}
        if self.sent_ms is not None:
            data["sent_ms"] = self.sent_ms
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Forward:
        d = json.loads(raw)
        reported = d.get("reported_us")
        sent = d.get("sent_ms")
        return cls(int(d["id"]), int(d["card"]), int(d["terminal"]), int(d["us"]), int(d["amount_us"]),
                   None if reported is None else int(reported),
                   None if reported is None else bool(d["is_fraud"]),
                   None if sent is None else int(sent))


class _Step:
    entity: Entity

    def __init__(self, allowed_lateness_us: int = ALLOWED_LATENESS_US) -> None:
        self.state = FreshState(features_of(self.entity), allowed_lateness_us)
        self.clock_us: int | None = None  # the newest event or report time processed
        self._changed: set[int] = set()

    def load(self, kind: str, record: dict[str, Any]) -> None:
        """A history event (the lake's, at start): into the state, forwarded nowhere.
        `kind` "transaction" (a transaction_event record) or "label" (a label_event record)."""
        if kind == "transaction":
            self._tick(record["event_time"])
            if self.state.add_transaction(record["transaction_id"], record["customer_id"], record["terminal_id"],
                                          record["event_time"], record["amount"]):
                self._changed.add(record["customer_id"] if self.entity is Entity.CARD else record["terminal_id"])
        else:
            self._tick(record["reported_time"])
            self.state.add_label(record["transaction_id"], bool(record["is_fraud"]), record["reported_time"])
            held = self.state.transaction(record["transaction_id"])
            if held is not None:
                self._changed.add(held[0] if self.entity is Entity.CARD else held[1])

    def _tick(self, us: int) -> None:
        self.clock_us = us if self.clock_us is None else max(self.clock_us, us)

    def exports(self) -> list[EntityEvents]:
        """The events of every entity changed since the last call (sorted by key), as of now."""
        changed, self._changed = sorted(self._changed), set()
        out = []
        for key in changed:
            events = self.state.entity_events(self.entity, key, as_of_us=self.clock_us)
            if events is not None:
                out.append(events)
        return out


class CardStep(_Step):
    entity = Entity.CARD

    def transaction(self, record: dict[str, Any]) -> list[Forward]:
        """A validated `transaction_event` record: counted for its card, forwarded (with any
        verdict that was waiting for it) unless its id was seen already."""
        transaction_id, card, terminal = record["transaction_id"], record["customer_id"], record["terminal_id"]
        us, amount_us = record["event_time"], amount_micros(record["amount"])
        self._tick(us)
        if not self.state.add_transaction_micro_units(transaction_id, card, terminal, us, amount_us):
            return []
        self._changed.add(card)
        forward = Forward(transaction_id, card, terminal, us, amount_us)
        return [forward, *(replace(forward, reported_us=r, is_fraud=f) for r, f in self.state.verdicts(transaction_id))]

    def label(self, record: dict[str, Any]) -> list[Forward]:
        """A validated `label_event` record: recorded, and forwarded to its transaction's
        terminal when the transaction is held (else it waits for it, inside the state)."""
        transaction_id, reported_us, is_fraud = record["transaction_id"], record["reported_time"], bool(record["is_fraud"])
        self._tick(reported_us)
        self.state.add_label(transaction_id, is_fraud, reported_us)
        held = self.state.transaction(transaction_id)
        if held is None:
            return []
        card, terminal, us, amount_us = held
        if reported_us < us:
            return []  # reported before its transaction: invalid, counts nowhere
        self._changed.add(card)
        return [Forward(transaction_id, card, terminal, us, amount_us, reported_us, is_fraud)]


class TerminalStep(_Step):
    entity = Entity.TERMINAL

    def forwards(self, forwards: Iterable[Forward]) -> None:
        for f in forwards:
            # A verdict carries its transaction: it counts even when a restart replays it
            # without the transaction's own record (a transaction seen already is dropped).
            self.state.add_transaction_micro_units(f.transaction_id, f.card, f.terminal, f.us, f.amount_us)
            if f.is_verdict:
                assert f.reported_us is not None and f.is_fraud is not None
                self._tick(f.reported_us)
                self.state.add_label(f.transaction_id, f.is_fraud, f.reported_us)
            else:
                self._tick(f.us)
            self._changed.add(f.terminal)
