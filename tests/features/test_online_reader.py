"""The fast online readers return exactly what Feast's `get_online_features` returns.

A real Feast repo (applied), rows written by Feast itself into a real SQLite file or a real
redis-server: most entities with the row of day D, some with the day before's row only, some
with none; random transactions of D-1, D and D+1 over known and unknown ids. Per feature view
the raw rows (values and timestamps) equal `get_online_features(...).to_dict()`, and each
reader's model matrix and known flags equal `features.online.lookup`'s (Feast's path)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cardscore.core.config import Settings, load_settings
from cardscore.features.definitions import (
    CREATED_AT,
    CUSTOMER_FEATURES,
    CUSTOMER_KEY,
    CUSTOMER_VIEW,
    EVENT_TIMESTAMP,
    TERMINAL_FEATURES,
    TERMINAL_KEY,
    TERMINAL_VIEW,
    snapshot_time,
)
from cardscore.features.online_reader import (
    DirectReader,
    FeastReader,
    OnlineStoreUnavailable,
    SnapshotReader,
    open_reader,
)
from cardscore.features.online_tables import NO_ROW, VIEWS, FeatureViewsMissing, OnlineTables
from cardscore.features.store import apply, feature_store

DAY = date(2018, 6, 2)
N_CUSTOMERS, N_TERMINALS = 300, 400  # ids beyond these have no row at all
MICROS_PER_DAY = 86_400_000_000


def snapshot_frame(key: str, ids: np.ndarray, names: tuple[str, ...], day: date, rng: np.random.Generator) -> pd.DataFrame:
    stamp = pd.Timestamp(snapshot_time(day))
    frame = pd.DataFrame({key: ids.astype(np.int64), EVENT_TIMESTAMP: stamp, CREATED_AT: stamp})
    for name in names:
        if "_nb_tx_" in name:
            frame[name] = rng.integers(0, 60, len(ids)).astype(np.int64)
        else:
            frame[name] = rng.gamma(2.0, 30.0, len(ids))
    return frame


def write_world(store, seed: int = 0) -> None:
    """Day D's rows for ~80% of the entities, the day before's rows for ~10% others."""
    rng = np.random.default_rng(seed)
    for key, n, names, view in ((CUSTOMER_KEY, N_CUSTOMERS, CUSTOMER_FEATURES, CUSTOMER_VIEW),
                                (TERMINAL_KEY, N_TERMINALS, TERMINAL_FEATURES, TERMINAL_VIEW)):
        draw = rng.random(n)
        today = np.flatnonzero(draw < 0.8)
        yesterday = np.flatnonzero((draw >= 0.8) & (draw < 0.9))
        store.write_to_online_store(view, snapshot_frame(key, yesterday, names, DAY - timedelta(days=1), rng))
        store.write_to_online_store(view, snapshot_frame(key, today, names, DAY, rng))


def random_batch(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Transactions of D-1, D and D+1; ids over known and unknown entities (repeats included)."""
    start = int(pd.Timestamp(snapshot_time(DAY)).value // 1000)
    return {
        "customer_id": rng.integers(0, N_CUSTOMERS + 60, n),
        "terminal_id": rng.integers(0, N_TERMINALS + 80, n),
        "amount": np.round(rng.gamma(2.0, 40.0, n), 2),
        "event_time_us": start + rng.integers(-MICROS_PER_DAY, 2 * MICROS_PER_DAY, n),
    }


def feast_raw(store, view: str, ids: np.ndarray) -> dict[str, list]:
    join_key, names = VIEWS[view]
    rows = [{join_key: int(i)} for i in ids.tolist()]
    return store.get_online_features(features=[f"{view}:{n}" for n in names], entity_rows=rows).to_dict(
        include_event_timestamps=True
    )


def assert_raw_equal(tables: OnlineTables, store, view: str, ids: np.ndarray) -> None:
    """Values (None <-> NaN) and row times (Feast's 0 for no row <-> NO_ROW) of one view."""
    _, names = VIEWS[view]
    ours = tables.read(view, ids)
    theirs = feast_raw(store, view, ids)
    for j, name in enumerate(names):
        expected = np.array([np.nan if v is None else v for v in theirs[name]], dtype=np.float64)
        np.testing.assert_array_equal(ours.values[:, j], expected, err_msg=f"{view}.{name}")
        assert all(v is None or type(v) in (int, float) for v in theirs[name])
    # Feast's response says 0 where the store returned no row (SQLite: no row, NO_ROW here;
    # Redis answers an absent key with empty values at epoch 0, and so does the reader).
    stamps = np.asarray(theirs[f"{names[0]}__ts"], dtype=np.int64)
    np.testing.assert_array_equal(np.where(ours.event_seconds == NO_ROW, 0, ours.event_seconds), stamps)
    assert (stamps[np.isnan(ours.values[:, 0])] == 0).all()


def assert_reader_equals_feast(reader, reference: FeastReader, batch: dict[str, np.ndarray]) -> None:
    args = (batch["customer_id"], batch["terminal_id"], batch["amount"], batch["event_time_us"])
    ours, theirs = reader.read(*args), reference.read(*args)
    np.testing.assert_array_equal(ours.matrix, theirs.matrix)
    np.testing.assert_array_equal(ours.customer_known, theirs.customer_known)
    np.testing.assert_array_equal(ours.terminal_known, theirs.terminal_known)
    assert ours.snapshot_dates(batch["event_time_us"]) == theirs.snapshot_dates(batch["event_time_us"])


@dataclass
class OnlineWorld:
    settings: Settings
    store: object


def online_world(tmp_path: Path, feast: dict | None = None) -> OnlineWorld:
    settings = load_settings(overrides={"home": str(tmp_path / "home"), "feast": feast or {}})
    store = apply(settings)
    write_world(store)
    return OnlineWorld(settings, store)


@pytest.fixture
def sqlite_world(tmp_path: Path) -> OnlineWorld:
    return online_world(tmp_path)


@pytest.fixture
def redis_world(tmp_path: Path, redis_server: str) -> OnlineWorld:
    # A project of its own: the session's redis-server is shared by tests.
    return online_world(tmp_path, {"online_store": "redis", "redis_connection_string": redis_server,
                                   "project": f"p{uuid.uuid4().hex[:8]}"})


def check_world(world: OnlineWorld) -> None:
    rng = np.random.default_rng(7)
    tables = OnlineTables(world.store)
    reference = FeastReader(world.store)
    snapshot = SnapshotReader(OnlineTables(world.store), background=False)
    direct = DirectReader(OnlineTables(world.store))
    try:
        for view, n in ((CUSTOMER_VIEW, N_CUSTOMERS), (TERMINAL_VIEW, N_TERMINALS)):
            assert_raw_equal(tables, world.store, view, rng.integers(0, n + 50, 200))
            assert len(tables.entity_ids(view)) == len(tables.read_all(view)) > 0.85 * n
        for size in (1, 7, 500):
            batch = random_batch(rng, size)
            for reader in (snapshot, direct):
                assert_reader_equals_feast(reader, reference, batch)
        # The world has every case: known today, yesterday's row only, and no row at all.
        batch = random_batch(rng, 500)
        found = snapshot.read(batch["customer_id"], batch["terminal_id"], batch["amount"], batch["event_time_us"])
        assert 0 < found.customer_known.sum() < len(batch["customer_id"])
    finally:
        for closable in (tables, snapshot, direct):
            closable.close()


def test_readers_equal_get_online_features_on_sqlite(sqlite_world: OnlineWorld) -> None:
    check_world(sqlite_world)


@pytest.mark.engine
def test_readers_equal_get_online_features_on_redis(redis_world: OnlineWorld) -> None:
    check_world(redis_world)


def test_the_snapshot_reloads_when_another_connection_writes_the_store(sqlite_world: OnlineWorld) -> None:
    """A write by Feast (another connection) changes SQLite's data_version: the background
    watcher reloads, and reads equal Feast's again, the new rows included."""
    world = sqlite_world
    reader = SnapshotReader(OnlineTables(world.store), check_seconds=0.05)
    try:
        rng = np.random.default_rng(3)
        # Customers beyond the world get day D rows: unknown before, known after the reload.
        newcomers = np.arange(N_CUSTOMERS, N_CUSTOMERS + 20, dtype=np.int64)
        start = int(pd.Timestamp(snapshot_time(DAY)).value // 1000)
        batch = {"customer_id": newcomers, "terminal_id": np.zeros(20, dtype=np.int64),
                 "amount": np.full(20, 10.0), "event_time_us": np.full(20, start + 3_600_000_000)}
        args = (batch["customer_id"], batch["terminal_id"], batch["amount"], batch["event_time_us"])
        assert not reader.read(*args).customer_known.any()
        world.store.write_to_online_store(
            CUSTOMER_VIEW, snapshot_frame(CUSTOMER_KEY, newcomers, CUSTOMER_FEATURES, DAY, rng))
        deadline = time.monotonic() + 30
        while not reader.read(*args).customer_known.all():
            assert time.monotonic() < deadline, "the snapshot was not reloaded after the write"
            time.sleep(0.02)  # poll interval of the condition; the watcher reloads on its own
        assert reader.reloads >= 1 and reader.status()["store_up"]
        assert_reader_equals_feast(reader, FeastReader(world.store), {k: np.asarray(v) for k, v in batch.items()})
    finally:
        reader.close()


def test_the_snapshot_keeps_serving_when_the_store_goes_away_and_the_direct_reader_fails(
    sqlite_world: OnlineWorld,
) -> None:
    world = sqlite_world
    batch = random_batch(np.random.default_rng(1), 50)
    args = (batch["customer_id"], batch["terminal_id"], batch["amount"], batch["event_time_us"])
    snapshot = SnapshotReader(OnlineTables(world.store), background=False)
    direct = DirectReader(OnlineTables(world.store))
    before = snapshot.read(*args).matrix
    path = Path(world.settings.feast_sqlite_path)
    snapshot.tables.close()
    direct.tables.close()
    path.rename(path.with_suffix(".gone"))
    try:
        with pytest.raises(OnlineStoreUnavailable):
            snapshot.refresh()
        assert snapshot.status()["store_up"] is False
        np.testing.assert_array_equal(snapshot.read(*args).matrix, before)
        with pytest.raises(OnlineStoreUnavailable):
            direct.read(*args)
        assert direct.status()["store_up"] is False
        with pytest.raises(OnlineStoreUnavailable):
            open_reader(world.settings, "snapshot", store=feature_store(world.settings))
    finally:
        path.with_suffix(".gone").rename(path)
        snapshot.close()
        direct.close()


def test_readers_refuse_a_registry_without_the_feature_views(tmp_path: Path) -> None:
    settings = load_settings(overrides={"home": str(tmp_path / "home")})
    for kind in ("snapshot", "direct", "feast"):
        with pytest.raises(FeatureViewsMissing, match="cardscore run features"):
            open_reader(settings, kind)


@pytest.fixture
def closing() -> Iterator[list]:
    opened: list = []
    yield opened
    for reader in opened:
        reader.close()


def test_open_reader_follows_the_setting(sqlite_world: OnlineWorld, closing: list) -> None:
    for kind, cls in (("snapshot", SnapshotReader), ("direct", DirectReader), ("feast", FeastReader)):
        settings = sqlite_world.settings.model_copy(update={
            "features": sqlite_world.settings.features.model_copy(update={"online_reader": kind})})
        reader = open_reader(settings, background=False)
        closing.append(reader)
        assert isinstance(reader, cls) and reader.kind == kind and reader.status()["ready"]
