"""Online features for scoring, read the fast way: one interface, three readers.

    reader = open_reader(settings)              # features.online_reader: snapshot | direct | feast
    rows = reader.read(customer_id, terminal_id, amount, event_time_us)   # numpy arrays
    scores = booster.inplace_predict(rows.matrix)

Every reader returns what `features.online.lookup` (one `get_online_features` call) returns
for the same store content: the model matrix in `MODEL_FEATURES` order (request-time features
from `features.request_time`, the definition Feast's on-demand view runs; customer and
terminal features of the row of the transaction's own UTC day, else the documented default),
and whether each entity had that day's row. Tests check it on random keys, unknown ones
included, against SQLite and a real Redis.

* `SnapshotReader` (default): the two views' rows in memory (numpy arrays, sorted ids), loaded
  at start and reloaded in a background thread when the store changes (a new day materialized:
  `OnlineTables.change_token`, checked every `online_snapshot_check_seconds`) or after
  `online_snapshot_max_age_seconds`. A read is two `searchsorted` calls: no I/O, no pandas.
  While the store is down the last snapshot keeps serving (the rows only change when a day is
  materialized); `status()` says the store is down.
* `DirectReader`: reads the batch's distinct entities from the store on every call, one query
  per feature view (`OnlineTables.read`); for stores too large to hold in memory.
* `FeastReader`: `get_online_features` itself (`features.online.lookup`); the reference, and
  the slow path the others replace.

No reader writes the store; none needs the Feast registry after it opened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cardscore.core.logs import get_logger
from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_KEY,
    CUSTOMER_VIEW,
    MODEL_FEATURES,
    REQUEST_FEATURES,
    TERMINAL_FEATURES,
    TERMINAL_KEY,
    TERMINAL_VIEW,
    TX_AMOUNT,
    UNKNOWN_ENTITY_DEFAULT,
    day_from_number,
)
from cardscore.features.online_tables import (
    NO_ROW,
    FeatureViewsMissing,
    OnlineStoreUnavailable,
    OnlineTables,
    ViewRows,
)
from cardscore.features.request_time import MICROS_PER_DAY, request_time_arrays

if TYPE_CHECKING:
    from feast import FeatureStore

    from cardscore.core.config import Settings

__all__ = [
    "DirectReader",
    "FeastReader",
    "FeatureRows",
    "FeatureViewsMissing",
    "OnlineFeatureReader",
    "OnlineStoreUnavailable",
    "SnapshotReader",
    "assemble",
    "open_reader",
    "snapshot_dates",
]

log = get_logger("features.online_reader")

_SECONDS_PER_DAY = MICROS_PER_DAY // 1_000_000
_COLUMN = {name: i for i, name in enumerate(MODEL_FEATURES)}
_CUSTOMER_COLUMNS = [_COLUMN[name] for name in CUSTOMER_FEATURES]
_TERMINAL_COLUMNS = [_COLUMN[name] for name in TERMINAL_FEATURES]


@dataclass(frozen=True)
class FeatureRows:
    """Features of a batch of transactions, row i for transaction i."""

    matrix: np.ndarray  # rows x MODEL_FEATURES, float64, MODEL_FEATURES order
    customer_known: np.ndarray  # bool: the customer had a row of the transaction's day
    terminal_known: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.matrix)

    def snapshot_dates(self, event_time_us: np.ndarray) -> list[date | None]:
        return snapshot_dates(event_time_us, self.customer_known, self.terminal_known)


class OnlineFeatureReader(Protocol):
    """What the stream scorer and the scoring API read features through."""

    kind: str

    def read(self, customer_id: np.ndarray, terminal_id: np.ndarray, amount: np.ndarray,
             event_time_us: np.ndarray) -> FeatureRows: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def snapshot_dates(event_time_us: np.ndarray, customer_known: np.ndarray, terminal_known: np.ndarray) -> list[date | None]:
    """A row's snapshot is its transaction's UTC day (no other day's rows are served); None
    when neither entity had a row, i.e. every entity feature is a default."""
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


def assemble(amount: np.ndarray, event_time_us: np.ndarray, customer_values: np.ndarray,
             customer_seconds: np.ndarray, terminal_values: np.ndarray, terminal_seconds: np.ndarray) -> FeatureRows:
    """The model matrix from the rows found for each transaction's customer and terminal:
    an entity's row serves a transaction only if it is the snapshot of that transaction's own
    UTC day (event time D 00:00), else its features take the default (features.online)."""
    micros = np.asarray(event_time_us, dtype=np.int64)
    day_start = micros // MICROS_PER_DAY * _SECONDS_PER_DAY
    customer_known = np.asarray(customer_seconds, dtype=np.int64) == day_start
    terminal_known = np.asarray(terminal_seconds, dtype=np.int64) == day_start
    matrix = np.empty((len(micros), len(MODEL_FEATURES)), dtype=np.float64)
    request = request_time_arrays(np.asarray(amount, dtype=np.float64), micros)
    for name in REQUEST_FEATURES:
        matrix[:, _COLUMN[name]] = request[name]
    matrix[:, _CUSTOMER_COLUMNS] = np.where(customer_known[:, None], customer_values, UNKNOWN_ENTITY_DEFAULT)
    matrix[:, _TERMINAL_COLUMNS] = np.where(terminal_known[:, None], terminal_values, UNKNOWN_ENTITY_DEFAULT)
    return FeatureRows(matrix, customer_known, terminal_known)


def _take(rows: ViewRows, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, event_seconds) of `ids` from rows sorted by id; an absent id has no row."""
    ids = np.asarray(ids, dtype=np.int64)
    k = rows.values.shape[1]
    if not len(rows):
        return np.full((len(ids), k), np.nan), np.full(len(ids), NO_ROW, dtype=np.int64)
    position = np.minimum(np.searchsorted(rows.ids, ids), len(rows) - 1)
    found = rows.ids[position] == ids
    values = np.where(found[:, None], rows.values[position], np.nan)
    seconds = np.where(found, rows.event_seconds[position], NO_ROW)
    return values, seconds


# ------------------------------------------------------------------------------ readers


class DirectReader:
    """Reads the batch's distinct entities from the online store on every call."""

    kind = "direct"

    def __init__(self, tables: OnlineTables) -> None:
        self.tables = tables
        self._store_up = True

    def read(self, customer_id: np.ndarray, terminal_id: np.ndarray, amount: np.ndarray,
             event_time_us: np.ndarray) -> FeatureRows:
        try:
            customer = self._rows(CUSTOMER_VIEW, customer_id)
            terminal = self._rows(TERMINAL_VIEW, terminal_id)
        except OnlineStoreUnavailable:
            self._store_up = False
            raise
        self._store_up = True
        return assemble(amount, event_time_us, *customer, *terminal)

    def _rows(self, view: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distinct, inverse = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True)
        rows = self.tables.read(view, distinct)
        return rows.values[inverse], rows.event_seconds[inverse]

    def status(self) -> dict[str, Any]:
        return {"reader": self.kind, "store": self.tables.kind, "ready": True, "store_up": self._store_up}

    def close(self) -> None:
        self.tables.close()


@dataclass(frozen=True)
class Snapshot:
    token: Any
    views: dict[str, ViewRows]
    loaded_at: float  # monotonic

    @property
    def rows(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.views.items()}


@dataclass
class SnapshotReader:
    """The views' rows in memory; reloaded when the store changes (see the module docstring)."""

    tables: OnlineTables
    check_seconds: float = 2.0
    max_age_seconds: float = 3600.0
    background: bool = True
    clock: Callable[[], float] = time.monotonic
    kind: str = field(default="snapshot", init=False)

    def __post_init__(self) -> None:
        self._snapshot: Snapshot = self._load()  # raises: no reader without a first snapshot
        self._store_up = True
        self.reloads = 0
        self._stop = threading.Event()
        self._refresh_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if self.background:
            self._thread = threading.Thread(target=self._watch, name="online-snapshot", daemon=True)
            self._thread.start()

    def _load(self) -> Snapshot:
        token = self.tables.change_token()  # before the rows: a write in between reloads again
        started = time.perf_counter()
        views = {name: self.tables.read_all(name) for name in (CUSTOMER_VIEW, TERMINAL_VIEW)}
        snapshot = Snapshot(token, views, self.clock())
        log.info("online_snapshot.loaded", store=self.tables.kind, rows=snapshot.rows,
                 seconds=round(time.perf_counter() - started, 3))
        return snapshot

    def refresh(self, force: bool = False) -> bool:
        """Reload if the store changed, the snapshot is too old, or `force`; True if reloaded.
        Raises OnlineStoreUnavailable when the store cannot be read (the old snapshot stays)."""
        with self._refresh_lock:
            try:
                stale = self.clock() - self._snapshot.loaded_at >= self.max_age_seconds
                if not (force or stale or self.tables.change_token() != self._snapshot.token):
                    self._store_up = True
                    return False
                snapshot = self._load()
            except OnlineStoreUnavailable:
                self._store_up = False
                raise
            self._snapshot = snapshot  # one reference swap: a concurrent read sees old or new
            self._store_up = True
            self.reloads += 1
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.refresh()
            except OnlineStoreUnavailable as exc:
                log.warning("online_snapshot.refresh_failed", store=self.tables.kind, error=str(exc)[:300],
                            serving_since_s=round(self.clock() - self._snapshot.loaded_at, 1))
            except Exception as exc:  # the watcher must outlive any surprise; the snapshot stays
                log.error("online_snapshot.refresh_error", error=str(exc)[:300])

    def read(self, customer_id: np.ndarray, terminal_id: np.ndarray, amount: np.ndarray,
             event_time_us: np.ndarray) -> FeatureRows:
        snapshot = self._snapshot
        customer = _take(snapshot.views[CUSTOMER_VIEW], customer_id)
        terminal = _take(snapshot.views[TERMINAL_VIEW], terminal_id)
        return assemble(amount, event_time_us, *customer, *terminal)

    def status(self) -> dict[str, Any]:
        snapshot = self._snapshot
        return {"reader": self.kind, "store": self.tables.kind, "ready": True, "store_up": self._store_up,
                "snapshot_age_seconds": round(self.clock() - snapshot.loaded_at, 3), "rows": snapshot.rows,
                "reloads": self.reloads}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.tables.close()


class FeastReader:
    """`get_online_features` (through `features.online.lookup`): the reference reader."""

    kind = "feast"

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self._store_up = True

    def read(self, customer_id: np.ndarray, terminal_id: np.ndarray, amount: np.ndarray,
             event_time_us: np.ndarray) -> FeatureRows:
        from cardscore.features.online import lookup

        records: list[Mapping[str, Any]] = [
            {CUSTOMER_KEY: c, TERMINAL_KEY: t, TX_AMOUNT: a, "event_time": e}
            for c, t, a, e in zip(np.asarray(customer_id, dtype=np.int64).tolist(),
                                  np.asarray(terminal_id, dtype=np.int64).tolist(),
                                  np.asarray(amount, dtype=np.float64).tolist(),
                                  np.asarray(event_time_us, dtype=np.int64).tolist(), strict=True)
        ]
        try:
            found = lookup(self.store, records)
        except Exception as exc:
            self._store_up = False
            raise OnlineStoreUnavailable(f"get_online_features failed: {exc}") from exc
        self._store_up = True
        return FeatureRows(found.matrix, np.asarray(found.customer_known, dtype=bool),
                           np.asarray(found.terminal_known, dtype=bool))

    def status(self) -> dict[str, Any]:
        return {"reader": self.kind, "store": str(self.store.config.online_store.type), "ready": True,
                "store_up": self._store_up}

    def close(self) -> None:
        return None


def open_reader(settings: Settings, kind: str | None = None, store: FeatureStore | None = None,
                background: bool = True) -> OnlineFeatureReader:
    """The reader `settings.features.online_reader` names (or `kind`), over `store` or the
    settings' feature store. Raises FeatureViewsMissing before the features stage applied the
    repo, OnlineStoreUnavailable when the store cannot be read."""
    from cardscore.features.store import feature_store

    kind = kind or settings.features.online_reader
    store = store or feature_store(settings)
    if kind == "feast":
        OnlineTables(store).close()  # the same registry checks as the other readers
        return FeastReader(store)
    tables = OnlineTables(store)
    try:
        if kind == "direct":
            return DirectReader(tables)
        if kind == "snapshot":
            cfg = settings.features
            return SnapshotReader(tables, cfg.online_snapshot_check_seconds, cfg.online_snapshot_max_age_seconds,
                                  background=background)
    except BaseException:
        tables.close()
        raise
    tables.close()
    raise ValueError(f"unknown online reader {kind!r}: snapshot, direct or feast")
