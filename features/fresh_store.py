"""The fresh features' online state in the Feast online store: one row per card and terminal
holding its `EntityEvents` (what a reader needs to finish the features at its own t).

Written **through Feast**: each entity has a feature view (`card_fresh_events`,
`terminal_fresh_events`, behind a `PushSource`), and the streaming pipeline writes its rows with
the provider's `online_write_batch` (what `FeatureStore.push(..., to=ONLINE)` ends in), so the
rows are in Feast's own storage format in whichever online store is configured (SQLite,
Redis). Read back in one `online_read` per micro-batch with Feast's provider, like
`online_tables` reads the snapshot views.

Feast requires a batch source behind a push source; it is declared as an empty query of the
view's columns (so `feast plan/apply` can validate it), never materialized: these views have no
offline history. The offline values are
`gold.fresh_features`, computed from the same events by the same declaration.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cardscore.features.definitions import CUSTOMER_KEY, TERMINAL_KEY
from cardscore.features.fresh import Entity
from cardscore.features.fresh_events import EntityEvents

if TYPE_CHECKING:
    from feast import FeatureStore


EVENTS_FIELD = "events"  # the encoded EntityEvents (features.fresh_events)
PUSHED_AT = "event_timestamp"  # Feast's row time: the writer's clock (as_of_us) as a timestamp
VIEWS: dict[Entity, str] = {Entity.CARD: "card_fresh_events", Entity.TERMINAL: "terminal_fresh_events"}
KEYS: dict[Entity, str] = {Entity.CARD: CUSTOMER_KEY, Entity.TERMINAL: TERMINAL_KEY}
_WRITE_CHUNK = 5_000


def push_source_name(entity: Entity) -> str:
    return f"{VIEWS[entity]}_push"


def fresh_feast_objects(entities: dict[Entity, Any]) -> tuple[list[Any], list[Any]]:
    """(sources, views) of the fresh entity events, for `features.store.feast_objects`;
    `entities` are the Feast Entity objects of the card (customer) and terminal."""
    from feast import FeatureView, Field, PushSource
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.types import Bytes, Int64

    sources: list[Any] = []
    views: list[Any] = []
    for entity, view in VIEWS.items():
        batch = SparkSource(
            name=f"{view}_offline",
            # An empty relation of the view's columns: these views have no offline history (the
            # offline values are gold.fresh_features), and `feast plan/apply` can still read it.
            query=(f"SELECT CAST(NULL AS BIGINT) AS {KEYS[entity]}, CAST(NULL AS BINARY) AS {EVENTS_FIELD}, "
                   f"CAST(NULL AS TIMESTAMP) AS {PUSHED_AT} WHERE 1 = 0"),
            timestamp_field=PUSHED_AT,
            description="declared because Feast requires a batch source behind a push source: empty",
        )
        push = PushSource(name=push_source_name(entity), batch_source=batch,
                          description="pushed by `cardscore fresh-stream` (streaming/fresh_pipeline.py)")
        sources += [batch, push]
        views.append(
            FeatureView(
                name=view,
                entities=[entities[entity]],
                ttl=timedelta(0),  # no expiry: a quiet entity's events stay valid until it changes
                schema=[Field(name=KEYS[entity], dtype=Int64), Field(name=EVENTS_FIELD, dtype=Bytes)],
                source=push,
                online=True,
                description=f"the {entity.value}'s fresh-feature events (features.fresh_events), finished at "
                "request time by the scorers",
            )
        )
    return sources, views


class FreshEventsStore:
    """Writes and batched reads of the entity events in the online store of `store` (which
    must have the views applied: `features.store.ensure_applied`)."""

    def __init__(self, store: FeatureStore) -> None:
        from feast.infra.provider import get_provider

        self.store = store
        self.config = store.config
        self.views = {entity: store.get_feature_view(name) for entity, name in VIEWS.items()}
        self._provider = get_provider(self.config)
        self._lock = threading.Lock()

    def write(self, events: Iterable[EntityEvents]) -> int:
        """Write the events (the latest per entity wins); returns the number of rows written.

        Through the provider's `online_write_batch` with the rows built as Feast builds them
        (entity keys and values as protos): what `FeatureStore.push(..., to=ONLINE)` ends in,
        without its DataFrame -> Arrow -> proto conversion and registry listing per call,
        which cost a card step more than its own work at stream rates."""
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        by_entity: dict[Entity, dict[int, EntityEvents]] = {}
        for e in events:
            by_entity.setdefault(e.entity, {})[e.key] = e
        written = 0
        for entity, latest in by_entity.items():
            now = datetime.now(UTC)
            keys = _entity_keys(entity, list(latest))
            rows = [(key, {EVENTS_FIELD: ValueProto(bytes_val=e.encode())}, _timestamp(e.as_of_us), now)
                    for key, e in zip(keys, latest.values(), strict=True)]
            for start in range(0, len(rows), _WRITE_CHUNK):
                with self._lock:
                    self._provider.online_write_batch(self.config, self.views[entity], rows[start:start + _WRITE_CHUNK],
                                                      None)
            written += len(rows)
        return written

    def read(self, entity: Entity, keys: Sequence[int]) -> dict[int, EntityEvents]:
        """The stored events of `keys` (absent keys: never written)."""
        distinct = sorted({int(k) for k in keys})
        if not distinct:
            return {}
        entity_keys = _entity_keys(entity, distinct)
        out: dict[int, EntityEvents] = {}
        for start in range(0, len(entity_keys), _WRITE_CHUNK):
            with self._lock:
                rows = self._provider.online_read(self.config, self.views[entity],
                                                  entity_keys[start:start + _WRITE_CHUNK], [EVENTS_FIELD])
            for key, (_stamp, found) in zip(distinct[start:start + _WRITE_CHUNK], rows, strict=True):
                value = None if found is None else found.get(EVENTS_FIELD)
                if value is not None and value.HasField("bytes_val"):
                    out[key] = EntityEvents.decode(value.bytes_val)
        return out


def _entity_keys(entity: Entity, keys: Sequence[int]) -> list[Any]:
    """Feast's entity keys of `keys`, built as `get_online_features` builds them."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    protos = python_values_to_proto_values(list(keys), ValueType.INT64)
    return [EntityKeyProto(join_keys=[KEYS[entity]], entity_values=[p]) for p in protos]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)
