"""Online features of a micro-batch, through the shared reader (`features.online_reader`).

The reader (the one the scoring API uses) returns exactly what Feast's `get_online_features`
returns: the model matrix in `MODEL_FEATURES` order, request-time features from
`features.request_time`, and whether each customer/terminal had a row for the transaction's
own day. By default it serves the online store's rows from memory (reloaded when a day is
materialized), so a batch's lookup is two `searchsorted` calls on the batch's columns: no
I/O, no per-message dicts, no pandas. This module adds what the score message needs: the
snapshot date.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from cardscore.features.online_reader import snapshot_dates

if TYPE_CHECKING:
    from cardscore.core.config import Settings
    from cardscore.features.online_reader import OnlineFeatureReader
    from cardscore.streaming.messages import TransactionBatch

__all__ = ["BatchFeatures", "Lookup", "ReaderLookup", "open_lookup", "snapshot_dates"]


@dataclass(frozen=True)
class BatchFeatures:
    matrix: np.ndarray  # rows x MODEL_FEATURES, float64
    customer_known: np.ndarray  # bool
    terminal_known: np.ndarray  # bool
    snapshot_date: list[date | None]  # the day whose snapshot served the row; None: defaults only


Lookup = Callable[["TransactionBatch"], BatchFeatures]


class ReaderLookup:
    """A batch's features from its columns, with one read of the online feature reader."""

    def __init__(self, reader: OnlineFeatureReader) -> None:
        self.reader = reader

    def __call__(self, batch: TransactionBatch) -> BatchFeatures:
        rows = self.reader.read(batch.customer_id, batch.terminal_id, batch.amount, batch.event_time_us)
        return BatchFeatures(rows.matrix, rows.customer_known, rows.terminal_known,
                             rows.snapshot_dates(batch.event_time_us))

    def status(self) -> dict[str, Any]:
        return self.reader.status()

    def close(self) -> None:
        self.reader.close()


def open_lookup(settings: Settings) -> ReaderLookup:
    """The reader `features.online_reader` names, over the settings' feature store. Raises
    `FeatureViewsMissing` before the features stage applied the repo and
    `OnlineStoreUnavailable` while the store cannot be read (the scorer retries both)."""
    from cardscore.features.online_reader import open_reader

    return ReaderLookup(open_reader(settings))
