"""The Feast online store's rows of the entity feature views, read through Feast's own code.

`get_online_features` spends most of its time outside the store: entity-row conversion,
the on-demand view, response protos, `to_dict`. This module reads only the rows, in a batch,
with the store's own `online_read` (one query per feature view: a SQLite `SELECT ... IN`, or
one Redis pipeline of HMGETs), so the storage format (table names, entity-key
serialization, value protos, timestamps) stays Feast's: entity keys are built with
`feast.type_map.python_values_to_proto_values` like `get_online_features` builds them, values
decoded with `feast.type_map.feast_value_type_to_python_type` like `OnlineResponse.to_dict`,
timestamps cut to whole seconds like its response protos. Feast documents this format as part
of its public contract ("Online Store Format Spec": other software may read the stores
directly).

Two things Feast has no public call for, done with its helpers:

* listing the entities a view holds (for an in-memory snapshot): SQLite `SELECT DISTINCT
  entity_key` from the view's table (`compute_table_id`), Redis `SCAN` for keys ending with the
  project name (Feast's key is the serialized entity key + project); both decoded with
  `feast.infra.key_encoding_utils.deserialize_entity_key`;
* knowing the store changed: SQLite `PRAGMA data_version` (changes with every commit of another
  connection, e.g. a materialize), Redis the views' materialization intervals in the registry.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_KEY,
    CUSTOMER_VIEW,
    TERMINAL_FEATURES,
    TERMINAL_KEY,
    TERMINAL_VIEW,
)

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

# The entity feature views the model reads: view -> (join key, features in model order).
VIEWS: dict[str, tuple[str, tuple[str, ...]]] = {
    CUSTOMER_VIEW: (CUSTOMER_KEY, CUSTOMER_FEATURES),
    TERMINAL_VIEW: (TERMINAL_KEY, TERMINAL_FEATURES),
}
# event_seconds of an entity the store returned no row for (Feast's response says 0 then; a
# Redis store answers an absent key with empty values at epoch 0, which is kept as it is).
NO_ROW = -1
_READ_CHUNK = 5_000  # keys per online_read: below SQLite's bound on query parameters


class OnlineStoreUnavailable(RuntimeError):
    """The online store cannot be read (down, unreachable, or its tables are missing)."""


class FeatureViewsMissing(RuntimeError):
    """The Feast registry has no entity feature views yet (the features stage applies them)."""


@dataclass(frozen=True)
class ViewRows:
    """Rows of one feature view for a list of entity ids, in that order."""

    ids: np.ndarray  # int64
    values: np.ndarray  # float64 (ids x features, model order); NaN where Feast returns None
    event_seconds: np.ndarray  # int64 epoch seconds of the row; NO_ROW when the entity has none

    def __len__(self) -> int:
        return len(self.ids)


class OnlineTables:
    """Batched reads of the customer and terminal views from the online store of `store`.

    Opens its own provider (its own SQLite connection or Redis client), so it shares no
    connection with other users of the FeatureStore. Thread-safe: one read at a time."""

    def __init__(self, store: FeatureStore) -> None:
        from feast.errors import FeatureViewNotFoundException
        from feast.infra.provider import get_provider

        self.config = store.config
        self.project = store.project
        self.registry = store.registry
        self.kind = str(self.config.online_store.type)
        try:
            self.views: dict[str, FeatureView] = {name: store.get_feature_view(name) for name in VIEWS}
        except FeatureViewNotFoundException as exc:
            raise FeatureViewsMissing(
                f"the Feast registry has no feature view {exc}; build and materialize features first "
                "(`cardscore run features`, `cardscore materialize`)"
            ) from None
        for name, (_key, features) in VIEWS.items():
            served = [f.name for f in self.views[name].features]
            missing = [f for f in features if f not in served]
            if missing:
                raise FeatureViewsMissing(f"feature view {name} does not serve {missing}")
        self._value_types = {
            name: [_value_type(self.views[name], f) for f in features] for name, (_k, features) in VIEWS.items()
        }
        self._provider = get_provider(self.config)
        self._lock = threading.Lock()
        self._sqlite: sqlite3.Connection | None = None
        if self.kind == "redis":
            self._fail_fast()

    def _fail_fast(self) -> None:
        """This reader's own Redis client retries once, at once: redis-py's default (3 retries,
        exponential backoff up to 10 s) makes a call to a stopped server take ~5 s, a scoring
        request included; the scorers retry at their own level."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = self._provider.online_store._get_client(self.config.online_store)  # Feast's client
        client.set_retry(Retry(NoBackoff(), 1))

    # ------------------------------------------------------------------ rows by id

    def read(self, view: str, ids: np.ndarray) -> ViewRows:
        """The rows of `view` for `ids` (distinct or not), in order: one `online_read` per
        chunk of 5,000 keys (one for a micro-batch)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
        from feast.value_type import ValueType

        join_key, features = VIEWS[view]
        ids = np.asarray(ids, dtype=np.int64)
        n, k = len(ids), len(features)
        values = np.full((n, k), np.nan, dtype=np.float64)
        seconds = np.full(n, NO_ROW, dtype=np.int64)
        types = self._value_types[view]
        table = self.views[view]
        for start in range(0, n, _READ_CHUNK):
            chunk = ids[start : start + _READ_CHUNK].tolist()
            protos = python_values_to_proto_values(chunk, ValueType.INT64)
            # One EntityKey per entity, as feast.utils._get_entity_key_protos builds them.
            keys = [EntityKeyProto(join_keys=[join_key], entity_values=[p]) for p in protos]
            try:
                with self._lock:
                    rows = self._provider.online_read(self.config, table, keys, list(features))
            except Exception as exc:
                raise OnlineStoreUnavailable(f"{self.kind} online store read failed: {exc}") from exc
            for offset, (stamp, found) in enumerate(rows):
                if found is None:
                    continue
                i = start + offset
                seconds[i] = _epoch_seconds(stamp)
                for j, name in enumerate(features):
                    proto = found.get(name)
                    value = None if proto is None else feast_value_type_to_python_type(proto, types[j])
                    if value is not None:
                        values[i, j] = value
        return ViewRows(ids, values, seconds)

    # ------------------------------------------------------------------ whole views

    def entity_ids(self, view: str) -> np.ndarray:
        """Every entity id `view` has a row for in the store (sorted, int64)."""
        try:
            with self._lock:
                if self.kind == "sqlite":
                    return self._sqlite_ids(view)
                if self.kind == "redis":
                    return self._redis_ids(view)
        except OnlineStoreUnavailable:
            raise
        except Exception as exc:
            raise OnlineStoreUnavailable(f"{self.kind} online store listing failed: {exc}") from exc
        raise OnlineStoreUnavailable(f"listing entities is implemented for sqlite and redis, not {self.kind}")

    def read_all(self, view: str) -> ViewRows:
        """Every row of `view` (a snapshot of the view), sorted by entity id."""
        return self.read(view, self.entity_ids(view))

    def change_token(self) -> Hashable:
        """A value that changes when the store's rows may have changed (cheap: call it often).
        SQLite: every commit by another connection; Redis: every materialization recorded in
        the registry (and a PING, so that an unreachable server raises)."""
        try:
            if self.kind == "sqlite":
                with self._lock:
                    return ("sqlite", self._connection().execute("PRAGMA data_version").fetchone()[0])
            with self._lock:  # Redis itself is asked too, so an outage shows in store_up
                self._provider.online_store._get_client(self.config.online_store).ping()
            return ("registry", self._materializations())
        except Exception as exc:
            raise OnlineStoreUnavailable(f"{self.kind} online store check failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._sqlite is not None:
                self._sqlite.close()
                self._sqlite = None
            store = getattr(self._provider, "online_store", None)
            conn = getattr(store, "_conn", None)
            if isinstance(conn, sqlite3.Connection):
                conn.close()
                store._conn = None  # type: ignore[union-attr]

    # ------------------------------------------------------------------ backends

    def _connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            path = self._provider.online_store._get_db_path(self.config)  # Feast's own path resolution
            # Read-only: this connection never writes, and a missing file is an error, not a new store.
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        return self._sqlite

    def _sqlite_ids(self, view: str) -> np.ndarray:
        from feast.infra.key_encoding_utils import deserialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id

        versioning = self.config.registry.enable_online_feature_view_versioning
        table = compute_table_id(self.project, self.views[view], versioning)
        quoted = '"' + table.replace('"', '""') + '"'
        rows = self._connection().execute(f"SELECT DISTINCT entity_key FROM {quoted}").fetchall()
        version = self.config.entity_key_serialization_version
        return _sorted_ids(VIEWS[view][0], (deserialize_entity_key(r[0], version) for r in rows))

    def _redis_ids(self, view: str) -> np.ndarray:
        from feast.infra.key_encoding_utils import deserialize_entity_key

        client = self._provider.online_store._get_client(self.config.online_store)  # Feast's client
        suffix = self.project.encode("utf-8")
        pattern = b"*" + _glob_escape(suffix)
        version = self.config.entity_key_serialization_version
        protos = []
        for key in client.scan_iter(match=pattern, count=1000):
            try:
                protos.append(deserialize_entity_key(bytes(key)[: -len(suffix)], version))
            except Exception:  # a key of another application that matched the pattern
                continue
        return _sorted_ids(VIEWS[view][0], protos)

    def _materializations(self) -> tuple[Any, ...]:
        out = []
        for name in VIEWS:
            view = self.registry.get_feature_view(name, self.project, allow_cache=False)
            out.append((name, tuple((i[0].isoformat(), i[1].isoformat()) for i in view.materialization_intervals)))
        return tuple(out)


def _value_type(view: FeatureView, feature: str) -> Any:
    for field in view.features:
        if field.name == feature:
            return field.dtype.to_value_type()
    raise KeyError(feature)


def _epoch_seconds(stamp: Any) -> int:
    """The row time in whole seconds, as Feast's response carries it (Timestamp.FromDatetime)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    proto = Timestamp()
    proto.FromDatetime(stamp)
    return int(proto.seconds)


def _sorted_ids(join_key: str, protos: Sequence[Any] | Any) -> np.ndarray:
    ids = [
        p.entity_values[0].int64_val
        for p in protos
        if len(p.join_keys) == 1 and p.join_keys[0] == join_key and p.entity_values[0].WhichOneof("val") == "int64_val"
    ]
    return np.unique(np.asarray(ids, dtype=np.int64))


def _glob_escape(text: bytes) -> bytes:
    out = bytearray()
    for byte in text:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)
