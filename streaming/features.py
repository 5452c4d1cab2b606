"""Online features of a micro-batch: one batched Feast read, through `features.online.lookup`.

The lookup (the feature engineer's single definition) returns the model matrix in
`MODEL_FEATURES` order, request-time features included (Feast's on-demand view runs
`features.request_time`), and whether each customer/terminal had a row for the transaction's
own day. This module only adds what the score message needs: the snapshot date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from cardscore.features.definitions import day_from_number
from cardscore.features.request_time import MICROS_PER_DAY

if TYPE_CHECKING:
    from feast import FeatureStore

    from cardscore.core.config import Settings


@dataclass(frozen=True)
class BatchFeatures:
    matrix: np.ndarray  # rows x MODEL_FEATURES, float64
    customer_known: np.ndarray  # bool
    terminal_known: np.ndarray  # bool
    snapshot_date: list[date | None]  # the day whose snapshot served the row; None: defaults only


Lookup = Callable[[Sequence[Mapping[str, Any]]], BatchFeatures]


def snapshot_dates(event_time_us: np.ndarray, customer_known: np.ndarray, terminal_known: np.ndarray) -> list[date | None]:
    """A row's snapshot is its transaction's UTC day (the lookup serves no other day's rows);
    None when neither entity had a row, i.e. every entity feature is a default."""
    days = (np.asarray(event_time_us, dtype=np.int64) // MICROS_PER_DAY).tolist()
    known = (np.asarray(customer_known) | np.asarray(terminal_known)).tolist()
    cache: dict[int, date] = {}
    out: list[date | None] = []
    for day, served in zip(days, known, strict=True):
        if not served:
            out.append(None)
            continue
        if day not in cache:
            cache[day] = day_from_number(day)
        out.append(cache[day])
    return out


class FeatureServiceMissing(RuntimeError):
    """The Feast registry has no model FeatureService yet (the features stage applies it)."""


class FeastLookup:
    """`features.online.lookup` over one FeatureStore opened at start (no per-message calls).

    The scorer only reads the feature store: a registry without the model's FeatureService is
    an error (retried), never something the scorer registers itself."""

    def __init__(self, settings: Settings, store: FeatureStore | None = None) -> None:
        from feast.errors import FeatureServiceNotFoundException

        from cardscore.features.definitions import FEATURE_SERVICE_NAME
        from cardscore.features.store import feature_store

        self.settings = settings
        self.store = store or feature_store(settings)
        try:
            self.store.get_feature_service(FEATURE_SERVICE_NAME)
        except FeatureServiceNotFoundException:
            raise FeatureServiceMissing(
                f"the Feast registry {settings.feast_registry} has no feature service "
                f"{FEATURE_SERVICE_NAME!r}; build and materialize features first "
                "(`cardscore run features`, `cardscore materialize`)"
            ) from None

    def __call__(self, records: Sequence[Mapping[str, Any]]) -> BatchFeatures:
        from cardscore.features.online import lookup

        found = lookup(self.store, records)
        micros = np.fromiter((r["event_time"] for r in records), dtype=np.int64, count=len(records))
        return BatchFeatures(
            matrix=found.matrix,
            customer_known=np.asarray(found.customer_known, dtype=bool),
            terminal_known=np.asarray(found.terminal_known, dtype=bool),
            snapshot_date=snapshot_dates(micros, found.customer_known, found.terminal_known),
        )
