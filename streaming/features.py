"""Online features of a micro-batch, through the shared reader (`features.online_reader`).

The reader (the one the scoring API uses) returns exactly what Feast's `get_online_features`
returns: the model matrix in `MODEL_FEATURES` order, request-time features from
`features.request_time`, and whether each customer/terminal had a row for the transaction's
own day. By default it serves the online store's rows from memory (reloaded when a day is
materialized), so a batch's lookup is two `searchsorted` calls on the batch's columns: no
I/O, no per-message dicts, no pandas. This module adds what the score message needs: the
snapshot date.

With `streaming.fresh_features` the lookup also computes every transaction's fresh
(event-time) features (`features.fresh_online.FreshOnlineFeatures`: the events the fresh-stream
pipeline stored, united with the transactions this scorer saw), and a model of the
`snapshot_fresh_v1` set can be served: `BatchFeatures.in_layout` builds its columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from cardscore.features.fresh_online import served_matrix
from cardscore.features.online_reader import snapshot_dates

if TYPE_CHECKING:
    from cardscore.core.config import Settings
    from cardscore.features.fresh_online import FreshOnlineFeatures, FreshRows
    from cardscore.features.online_reader import OnlineFeatureReader
    from cardscore.streaming.messages import TransactionBatch

__all__ = ["BatchFeatures", "Lookup", "ReaderLookup", "open_lookup", "snapshot_dates"]


@dataclass(frozen=True)
class BatchFeatures:
    matrix: np.ndarray  # rows x MODEL_FEATURES, float64
    customer_known: np.ndarray  # bool
    terminal_known: np.ndarray  # bool
    snapshot_date: list[date | None]  # the day whose snapshot served the row; None: defaults only
    fresh: FreshRows | None = None  # the fresh features, when the scorer computes them

    def in_layout(self, layout: tuple[str, ...]) -> np.ndarray:
        """The rows as a matrix of `layout`'s columns (a served plan's `layout`)."""
        return served_matrix(self.matrix, self.fresh, layout)


Lookup = Callable[["TransactionBatch"], BatchFeatures]


class ReaderLookup:
    """A batch's features from its columns, with one read of the online feature reader (and,
    with `fresh`, the batch's fresh features: one read of the stored events per entity kind)."""

    def __init__(self, reader: OnlineFeatureReader, fresh: FreshOnlineFeatures | None = None) -> None:
        self.reader = reader
        self.fresh = fresh

    def __call__(self, batch: TransactionBatch) -> BatchFeatures:
        return self._read(batch, record=True)

    def probe(self, batch: TransactionBatch) -> BatchFeatures:
        """The same read for a made-up batch (a health probe): its rows are not added to the
        fresh state."""
        return self._read(batch, record=False)

    def _read(self, batch: TransactionBatch, record: bool) -> BatchFeatures:
        rows = self.reader.read(batch.customer_id, batch.terminal_id, batch.amount, batch.event_time_us)
        fresh = None
        if self.fresh is not None:
            fresh = self.fresh.read(batch.transaction_id, batch.customer_id, batch.terminal_id, batch.amount,
                                    batch.event_time_us, record=record)
        return BatchFeatures(rows.matrix, rows.customer_known, rows.terminal_known,
                             rows.snapshot_dates(batch.event_time_us), fresh)

    def status(self) -> dict[str, Any]:
        return self.reader.status()

    def close(self) -> None:
        self.reader.close()


def open_lookup(settings: Settings) -> ReaderLookup:
    """The reader `features.online_reader` names, over the settings' feature store (and the
    fresh features' reader when `streaming.fresh_features`). Raises `FeatureViewsMissing`
    before the features stage applied the repo and `OnlineStoreUnavailable` while the store
    cannot be read (the scorer retries both)."""
    from cardscore.features.fresh_online import open_fresh_online
    from cardscore.features.online_reader import open_reader

    reader = open_reader(settings)
    if not settings.streaming.fresh_features:
        return ReaderLookup(reader)
    try:
        return ReaderLookup(reader, open_fresh_online(settings))
    except BaseException:
        reader.close()
        raise
