"""The fresh features of a batch of transactions at their own times, for a scorer.

A scorer holds one `FreshOnlineFeatures`. Per batch it reads the stored events of the batch's
cards and terminals (`features.fresh_store`, written by `cardscore fresh-stream`), merges them
into a `FreshState` of its own, and answers each transaction, in order, from that state; then
it adds the transaction itself. So the state is the union of two sets of true events: what the
streaming pipeline had written and what this scorer saw. Both sets only ever hold real
transactions and verdicts, duplicates are dropped by id and verdicts are a set, so the union
never counts anything twice, and the values are exact as soon as every event before t is in it:

* a card's own earlier transactions are: they came before this one on the scorer's partition
  (the transactions topic is keyed by card), the same batch included, whatever the pipeline's
  lag;
* a terminal's transactions on other cards, and every verdict, come from the pipeline: exact
  when its lag is below the gap to the previous event, else the row records how far the
  pipeline had got (`card_as_of_us`, `terminal_as_of_us`: the writer's clock of the stored row)
  so that an auditor can tell lag from skew.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cardscore.features.definitions import MODEL_FEATURES
from cardscore.features.feature_sets import column_indexes
from cardscore.features.fresh import FRESH_FEATURES, Entity, FreshFeature, ahead_of_clock
from cardscore.features.fresh_events import EntityEvents
from cardscore.features.fresh_state import FreshState
from cardscore.features.fresh_store import FreshEventsStore

if TYPE_CHECKING:
    from cardscore.core.config import Settings

NOT_STORED = -1  # as-of of an entity with no stored row (never seen by the pipeline)


@dataclass(frozen=True)
class FreshRows:
    names: tuple[str, ...]  # the matrix's columns
    matrix: np.ndarray  # rows x features (declaration order), float64
    card_as_of_us: np.ndarray  # int64: the stored card row's writer clock; NOT_STORED
    terminal_as_of_us: np.ndarray  # int64


class FreshOnlineFeatures:
    def __init__(self, store: FreshEventsStore, features: tuple[FreshFeature, ...] = FRESH_FEATURES) -> None:
        self.store = store
        self.features = features
        self.names = tuple(f.name for f in features)
        self.state = FreshState(features)
        self._merged: dict[tuple[Entity, int], tuple[int, int, int, int]] = {}

    def read(self, transaction_id: np.ndarray, customer_id: np.ndarray, terminal_id: np.ndarray,
             amount: np.ndarray, event_time_us: np.ndarray, record: bool = True,
             now_us: int | None = None) -> FreshRows:
        """The features of each row at its own event time (rows in order; each row's own
        transaction is counted for the rows after it). `record=False` answers without adding
        the rows to the state (a health probe's made-up transaction); a row too far ahead of
        the clock (`now_us`, default the wall clock: `fresh.ahead_of_clock`) is answered and
        not added either."""
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        cards = self.store.read(Entity.CARD, np.unique(customer_id).tolist())
        terminals = self.store.read(Entity.TERMINAL, np.unique(terminal_id).tolist())
        for stored in (*cards.values(), *terminals.values()):
            self.merge(stored)
        n = len(transaction_id)
        matrix = np.empty((n, len(self.names)), dtype=np.float64)
        state = self.state
        for i in range(n):
            card, terminal, t = int(customer_id[i]), int(terminal_id[i]), int(event_time_us[i])
            values = state.features_at(card, terminal, t, float(amount[i]))
            matrix[i] = [values[name] for name in self.names]
            if record and not ahead_of_clock(t, now_us):
                state.add_transaction(int(transaction_id[i]), card, terminal, t, float(amount[i]))
        return FreshRows(
            self.names,
            matrix,
            np.fromiter((cards[int(c)].as_of_us if int(c) in cards else NOT_STORED for c in customer_id),
                        dtype=np.int64, count=n),
            np.fromiter((terminals[int(m)].as_of_us if int(m) in terminals else NOT_STORED for m in terminal_id),
                        dtype=np.int64, count=n),
        )

    def merge(self, events: EntityEvents) -> None:
        """Add a stored row's events to the state (skipped when the same row was merged last)."""
        mark = (events.newest_us, events.as_of_us, len(events.rows), sum(map(len, events.verdicts.values())))
        key = (events.entity, events.key)
        if self._merged.get(key) == mark:
            return
        self._merged[key] = mark
        self.state.add_entity_events(events)


def served_matrix(snapshot: np.ndarray, fresh: FreshRows | None, layout: Sequence[str]) -> np.ndarray:
    """A served plan's matrix (`layout`: MODEL_FEATURES, or with fresh columns) from the
    snapshot matrix (MODEL_FEATURES) and the fresh rows; ValueError when the layout needs fresh
    columns and none were computed."""
    layout = tuple(layout)
    if layout == MODEL_FEATURES:
        return snapshot
    if fresh is None:
        raise ValueError("the served model reads fresh features and this scorer computes none "
                         "(its fresh_features setting is off)")
    every = np.hstack((snapshot, fresh.matrix))
    columns = column_indexes(layout, (*MODEL_FEATURES, *fresh.names))
    return every if columns is None else every[:, columns]


def fresh_values_json(names: Sequence[str], values: Sequence[float]) -> str:
    """One row's served fresh values as the score message logs them (`fresh_features`): a
    compact JSON object, whole numbers written as integers (a count reads as the offline
    table's integer), in declaration order."""
    return json.dumps({n: (int(v) if float(v).is_integer() else float(v)) for n, v in zip(names, values, strict=True)},
                      separators=(",", ":"), allow_nan=False)


def open_fresh_online(settings: Settings) -> FreshOnlineFeatures:
    """A scorer's fresh features over the settings' feature store (the repo applied if its
    registry lacks the fresh views, as `cardscore fresh-stream` does)."""
    from cardscore.features.store import ensure_applied, feature_store

    return FreshOnlineFeatures(FreshEventsStore(ensure_applied(settings, feature_store(settings))))
