"""The Feast feature store, built from cardscore settings: repo config, objects, apply,
materialize, and the engine session Feast's Spark offline store runs on.

    store = feature_store(settings)            # FeatureStore over settings' registry/online store
    apply(settings)                             # register entities, sources, views, service
    materialize(settings, spark, day, day)      # the day's snapshot into the online store

Offline store: Feast's Spark store reading the gold Delta tables through the engine (Sail, or
classic Spark with Delta), never the file/dask store (it ignores Delta's log and serves stale
rows). Feast finds its session with `SparkSession.getActiveSession()`; `bound_session(spark)`
makes sure that is the caller's session, in whatever thread it runs.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict, dataclass
from datetime import date
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardscore.core import catalog
from cardscore.core.config.settings import join_uri
from cardscore.core.errors import MissingInput
from cardscore.core.logs import get_logger
from cardscore.features.definitions import (
    CREATED_AT,
    CUSTOMER_ENTITY,
    CUSTOMER_FEATURES,
    CUSTOMER_KEY,
    CUSTOMER_VIEW,
    DERIVED_REQUEST_FEATURES,
    EVENT_TIMESTAMP,
    FEATURE_SERVICE_NAME,
    REQUEST_SOURCE,
    REQUEST_VIEW,
    SNAPSHOT_DATE,
    SNAPSHOT_TTL,
    TERMINAL_ENTITY,
    TERMINAL_FEATURES,
    TERMINAL_KEY,
    TERMINAL_VIEW,
    TX_AMOUNT,
    TX_DATETIME,
    snapshot_time,
)
from cardscore.features.feast_patches import apply_using_join_fix
from cardscore.features.fresh import Entity as FreshEntity
from cardscore.features.fresh_store import VIEWS as FRESH_VIEWS
from cardscore.features.fresh_store import fresh_feast_objects

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig
    from pyspark.sql import SparkSession

    from cardscore.core.config import Settings

STAGE = "materialize"
log = get_logger("features.store")

apply_using_join_fix()


@dataclass(frozen=True)
class FeastObjects:
    entities: list[Any]
    sources: list[Any]
    views: list[Any]  # customer, terminal
    request_view: Any
    service: Any
    fresh_sources: list[Any]  # the fresh entity events: batch and push source per entity
    fresh_views: list[Any]  # card_fresh_events, terminal_fresh_events (features.fresh_store)

    def all(self) -> list[Any]:
        return [*self.entities, *self.sources, *self.views, self.request_view, self.service,
                *self.fresh_sources, *self.fresh_views]


def gold_uri(settings: Settings, table: str) -> str:
    """Location of a gold table (the same as `cardscore.core.lake.Lake.uri`, without a session)."""
    layer, name = table.split(".")
    return join_uri(settings.lake_root, layer, name)


def feast_objects(settings: Settings) -> FeastObjects:
    """Entities, Delta-backed Spark sources, feature views (TTL 1 day), the request-time
    on-demand view and the model's FeatureService, for these settings' lake."""
    from feast import Entity, FeatureService, FeatureView, Field, RequestSource
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.table_format import DeltaFormat
    from feast.types import Float64, Int64, UnixTimestamp
    from feast.value_type import ValueType

    from cardscore.features.request_time import request_time_odfv

    def dtype(name: str):
        return Int64 if "_nb_tx_" in name else Float64

    customer = Entity(
        name=CUSTOMER_ENTITY,
        join_keys=[CUSTOMER_KEY],
        value_type=ValueType.INT64,
        description="a card holder (customer_id of the transaction contract)",
    )
    terminal = Entity(
        name=TERMINAL_ENTITY,
        join_keys=[TERMINAL_KEY],
        value_type=ValueType.INT64,
        description="a merchant terminal (terminal_id of the transaction contract)",
    )
    views, sources = [], []
    for entity, key, view, table, names, what in (
        (customer, CUSTOMER_KEY, CUSTOMER_VIEW, catalog.CUSTOMER_FEATURES, CUSTOMER_FEATURES,
         "transactions in [D-w, D)"),
        (terminal, TERMINAL_KEY, TERMINAL_VIEW, catalog.TERMINAL_FEATURES, TERMINAL_FEATURES,
         "transactions in [D-7-w, D-7), frauds known before D"),
    ):
        source = SparkSource(
            name=f"gold_{view}",
            path=gold_uri(settings, table),
            table_format=DeltaFormat(),
            timestamp_field=EVENT_TIMESTAMP,
            created_timestamp_column=CREATED_AT,
            date_partition_column=SNAPSHOT_DATE,
            description=f"{table}: one snapshot per day D, event_timestamp D 00:00 UTC",
        )
        sources.append(source)
        views.append(
            FeatureView(
                name=view,
                entities=[entity],
                ttl=SNAPSHOT_TTL,
                schema=[Field(name=key, dtype=Int64)] + [Field(name=n, dtype=dtype(n)) for n in names],
                source=source,
                online=True,
                description=f"daily snapshot of day D ({what}); serves day D only (TTL 1 day)",
            )
        )
    request = RequestSource(
        name=REQUEST_SOURCE,
        schema=[Field(name=TX_AMOUNT, dtype=Float64), Field(name=TX_DATETIME, dtype=UnixTimestamp)],
        description="the transaction being scored: its amount and its own time",
    )
    # Built directly rather than with Feast's decorator, which rewrites the function's
    # __module__ to "__main__" (so a second build in the same process cannot find its source).
    request_view = OnDemandFeatureView(
        name=REQUEST_VIEW,
        sources=[request],
        schema=[Field(name=n, dtype=Float64) for n in DERIVED_REQUEST_FEATURES],
        mode="python",
        udf=request_time_odfv,
        udf_string=inspect.getsource(request_time_odfv),
        description="weekend and night flags (UTC) from features.request_time",
    )
    service = FeatureService(
        name=FEATURE_SERVICE_NAME,
        features=[*views, request_view],
        description="the fraud model's features (features.definitions.MODEL_FEATURES; "
        "tx_amount is the request value itself)",
    )
    fresh_sources, fresh_views = fresh_feast_objects({FreshEntity.CARD: customer, FreshEntity.TERMINAL: terminal})
    return FeastObjects([customer, terminal], sources, views, request_view, service, fresh_sources, fresh_views)


def repo_config(settings: Settings) -> RepoConfig:
    """Feast's RepoConfig from cardscore settings (the same as features/feature_store.yaml)."""
    from feast import RepoConfig
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        SparkOfflineStoreConfig,
    )
    from feast.repo_config import RegistryConfig

    feast_cfg = settings.feast
    if feast_cfg.online_store == "redis":
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        if not feast_cfg.redis_connection_string:
            raise ValueError("feast.online_store is redis but feast.redis_connection_string is not set")
        online: Any = RedisOnlineStoreConfig(connection_string=feast_cfg.redis_connection_string)
    else:
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

        Path(settings.feast_sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        online = SqliteOnlineStoreConfig(path=settings.feast_sqlite_path)
    registry = settings.feast_registry
    if "://" not in registry:
        Path(registry).parent.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project=feast_cfg.project,
        provider="local",
        registry=RegistryConfig(path=registry, cache_ttl_seconds=60),
        offline_store=SparkOfflineStoreConfig(spark_conf={"spark.sql.session.timeZone": "UTC"}),
        online_store=online,
        entity_key_serialization_version=3,
    )


def feature_store(settings: Settings) -> FeatureStore:
    """A FeatureStore for these settings (its registry may still be empty: see `apply`)."""
    import warnings

    from feast import FeatureStore

    # Feast warns on every Spark call that the store is alpha; once in our logs is enough.
    warnings.filterwarnings("ignore", message=".*experimental feature in alpha.*")
    return FeatureStore(config=repo_config(settings))


def apply(settings: Settings, store: FeatureStore | None = None) -> FeatureStore:
    """Register (or update) every Feast object of the repo; idempotent."""
    store = store or feature_store(settings)
    objects = feast_objects(settings)
    started = time.perf_counter()
    with redirect_stdout(StringIO()):
        store.apply(objects.all())
    log.info(
        "feast.applied",
        project=settings.feast.project,
        registry=settings.feast_registry,
        online_store=settings.feast.online_store,
        seconds=round(time.perf_counter() - started, 3),
    )
    return store


def ensure_applied(settings: Settings, store: FeatureStore) -> FeatureStore:
    """Apply the repo if the registry does not have the model's FeatureService or the fresh
    entity-event views yet (a registry applied before they existed)."""
    from feast.errors import FeatureServiceNotFoundException, FeatureViewNotFoundException

    try:
        store.get_feature_service(FEATURE_SERVICE_NAME)
        for view in FRESH_VIEWS.values():
            store.get_feature_view(view)
    except (FeatureServiceNotFoundException, FeatureViewNotFoundException):
        apply(settings, store)
    return store


@contextmanager
def bound_session(spark: SparkSession) -> Iterator[SparkSession]:
    """Make `spark` the session Feast's Spark store picks up (`getActiveSession`) meanwhile."""
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is spark:
        yield spark
        return
    holder = getattr(type(spark), "_active_session", None)
    if holder is None:  # classic pyspark: one JVM session per process is the only kind we open
        raise RuntimeError(
            "the given Spark session is not this thread's active session; Feast would use "
            "another one (open the session with cardscore.core.engine.get_spark)"
        )
    # Spark Connect keeps the active session per thread (a threading.local on the class).
    previous = getattr(holder, "session", None)
    holder.session = spark
    try:
        yield spark
    finally:
        holder.session = previous


# ------------------------------------------------------------------------------ materialize


@dataclass(frozen=True)
class MaterializeReport:
    first: date
    last: date
    online_store: str
    customer_rows: int  # rows of the last day's snapshots now served
    terminal_rows: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["first"], out["last"] = self.first.isoformat(), self.last.isoformat()
        return out


def materialize(
    settings: Settings,
    spark: SparkSession,
    first: date,
    last: date | None = None,
    store: FeatureStore | None = None,
) -> MaterializeReport:
    """Load the snapshots of days [first, last] into the online store.

    Each entity ends with its latest row in the range; the online lookup serves a row only
    for its own day (features.online), so rows of earlier days are never used for later ones.
    Materialize in day order: the SQLite store keeps the last write even when it is older.
    """
    from pyspark.sql import functions as F

    last = last or first
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    from cardscore.core.lake import Lake

    lake = Lake(spark, settings)
    for table in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES):
        if not lake.exists(table):
            raise MissingInput(
                STAGE, f"{table} does not exist at {lake.uri(table)}; run `cardscore run features` first"
            )
    counts = {
        table: lake.read(table).where(F.col(SNAPSHOT_DATE) == F.lit(last)).count()
        for table in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES)
    }
    if not any(counts.values()):
        log.warning(
            "materialize.empty_day",
            day=last.isoformat(),
            hint="no snapshot rows: the day was not built, or no entity was active",
        )
    store = ensure_applied(settings, store or feature_store(settings))
    started = time.perf_counter()
    with bound_session(spark), redirect_stdout(StringIO()):
        store.materialize(
            start_date=snapshot_time(first),
            end_date=snapshot_time(last),
            feature_views=[CUSTOMER_VIEW, TERMINAL_VIEW],
        )
    report = MaterializeReport(
        first=first,
        last=last,
        online_store=settings.feast.online_store,
        customer_rows=counts[catalog.CUSTOMER_FEATURES],
        terminal_rows=counts[catalog.TERMINAL_FEATURES],
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info("materialize.done", **report.to_dict())
    return report
