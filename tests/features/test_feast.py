"""The Feast store over the gold Delta tables: historical (pandas and Spark) and online
(SQLite and Redis) retrieval serve exactly the gold row of the transaction's own day."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cardscore.core import catalog
from cardscore.core.config import load_settings
from cardscore.features.definitions import (
    CUSTOMER_FEATURES,
    MODEL_FEATURES,
    TERMINAL_FEATURES,
    customer_count,
    terminal_count,
    terminal_risk,
)
from cardscore.features.online import lookup
from cardscore.features.online_reader import open_reader
from cardscore.features.request_time import request_time_record
from cardscore.features.retrieval import (
    EntityFrameError,
    historical_features,
    historical_features_spark,
)
from cardscore.features.store import feature_store, materialize
from tests.features.worlds import SPARSE_AMOUNT, SPARSE_CUSTOMER, SPARSE_TERMINAL

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENTITY_COLUMNS = ["transaction_id", "customer_id", "terminal_id", "event_timestamp", "tx_amount"]


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def entity_frame(world, first: date, last: date) -> pd.DataFrame:
    """The world's transactions of [first, last], plus sparse-entity rows on the edges."""
    tx = world.transactions
    days = tx["event_time"].dt.date
    rows = tx[(days >= first) & (days <= last)].rename(
        columns={"event_time": "event_timestamp", "amount": "tx_amount"}
    )[ENTITY_COLUMNS]
    edges = pd.DataFrame({
        "transaction_id": [-1, -2, -3, -4],
        "customer_id": [SPARSE_CUSTOMER, SPARSE_CUSTOMER, 1, 2],
        "terminal_id": [SPARSE_TERMINAL, 3, SPARSE_TERMINAL, SPARSE_TERMINAL],
        # The customer's last snapshot is 05-02 and the terminal's 05-09: at midnight of the next
        # day they are absent, and must not get the previous day's values.
        "event_timestamp": [utc("2018-05-02 23:59:59"), utc("2018-05-03 00:00:00"),
                            utc("2018-05-09 23:00:00"), utc("2018-05-10 00:00:00")],
        "tx_amount": [5.0, 6.0, 7.0, 8.0],
    })
    edges = edges[(edges["event_timestamp"].dt.date >= first) & (edges["event_timestamp"].dt.date <= last)]
    out = pd.concat([rows, edges], ignore_index=True)
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).dt.as_unit("us")
    return out.sample(frac=1.0, random_state=1).reset_index(drop=True)  # order must be kept


def expected_features(world, entities: pd.DataFrame) -> pd.DataFrame:
    """From the gold tables directly: the row of the transaction's own UTC day, else zeros."""
    customers = world.lake.read(catalog.CUSTOMER_FEATURES).toPandas()
    terminals = world.lake.read(catalog.TERMINAL_FEATURES).toPandas()
    by_customer = customers.set_index(["customer_id", "snapshot_date"])
    by_terminal = terminals.set_index(["terminal_id", "snapshot_date"])
    records = []
    for row in entities.itertuples():
        day = row.event_timestamp.date()
        record = request_time_record(row.tx_amount, row.event_timestamp.to_pydatetime())
        for index, key, names in ((by_customer, row.customer_id, CUSTOMER_FEATURES),
                                  (by_terminal, row.terminal_id, TERMINAL_FEATURES)):
            found = index.loc[(key, day)] if (key, day) in index.index else None
            record.update({n: float(found[n]) if found is not None else 0.0 for n in names})
        records.append(record)
    return pd.DataFrame(records)[list(MODEL_FEATURES)]


def assert_features_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.columns) == list(MODEL_FEATURES)
    assert (actual.dtypes == "float64").all()
    # The values are the gold rows themselves: no tolerance.
    np.testing.assert_array_equal(actual.to_numpy(), expected.to_numpy())


def records_of(entities: pd.DataFrame) -> list[dict]:
    """Stream-style validated transaction records (epoch microseconds, contract names)."""
    return [
        {"transaction_id": int(r.transaction_id), "customer_id": int(r.customer_id),
         "terminal_id": int(r.terminal_id), "amount": float(r.tx_amount),
         "event_time": int(r.event_timestamp.value // 1000)}
        for r in entities.itertuples()
    ]


# ------------------------------------------------------------------------------ historical


def test_historical_features_are_the_gold_rows_of_each_day(spark, feature_world) -> None:
    entities = entity_frame(feature_world, date(2018, 5, 1), date(2018, 5, 11))
    out = historical_features(feature_world.settings, spark, entities)

    assert list(out.columns) == ENTITY_COLUMNS + [f for f in MODEL_FEATURES if f != "tx_amount"]
    pd.testing.assert_frame_equal(out[ENTITY_COLUMNS], entities)  # same rows, same order, same types
    assert_features_equal(out[list(MODEL_FEATURES)], expected_features(feature_world, entities))
    edge = out.set_index("transaction_id")
    assert edge.loc[-1, customer_count(30)] == 1 and edge.loc[-1, "customer_id_avg_amount_30day_window"] == SPARSE_AMOUNT
    assert edge.loc[-2, customer_count(30)] == 0  # 05-03 00:00:00: not 05-02's row
    assert edge.loc[-3, terminal_count(30)] == 1 and edge.loc[-3, terminal_risk(30)] == 1.0
    assert edge.loc[-4, terminal_count(30)] == 0 and edge.loc[-4, terminal_risk(30)] == 0.0
    assert (out[customer_count(30)] > 0).mean() > 0.9  # the world's customers are known


def test_historical_features_in_the_engine_equal_the_pandas_ones(spark, feature_world) -> None:
    settings = feature_world.settings
    first = entity_frame(feature_world, date(2018, 5, 2), date(2018, 5, 4))
    second = entity_frame(feature_world, date(2018, 5, 9), date(2018, 5, 10))
    lazy_first = historical_features_spark(settings, spark, spark.createDataFrame(first))
    # A second retrieval before the first result is consumed must not change it.
    lazy_second = historical_features_spark(settings, spark, spark.createDataFrame(second))
    for entities, lazy in ((first, lazy_first), (second, lazy_second)):
        engine = lazy.toPandas().sort_values("transaction_id").reset_index(drop=True)
        pandas = historical_features(settings, spark, entities).sort_values("transaction_id").reset_index(drop=True)
        assert list(engine.columns) == list(pandas.columns)
        assert_features_equal(engine[list(MODEL_FEATURES)], pandas[list(MODEL_FEATURES)])
        stamps = pd.to_datetime(engine["event_timestamp"])
        stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps
        assert (stamps.to_numpy() == pandas["event_timestamp"].to_numpy()).all()  # the transaction's own time


def test_entity_frame_edges(spark, feature_world) -> None:
    settings = feature_world.settings
    entities = entity_frame(feature_world, date(2018, 5, 2), date(2018, 5, 2)).head(5)
    # Extra columns (a label for training) ride along; empty frames give empty answers.
    labelled = historical_features(settings, spark, entities.assign(label=[1, 0, 0, 1, 0]))
    assert labelled["label"].tolist() == [1, 0, 0, 1, 0]
    empty = historical_features(settings, spark, entities.head(0))
    assert len(empty) == 0 and list(empty.columns) == list(labelled.columns[:5]) + list(MODEL_FEATURES[1:])
    none = historical_features_spark(settings, spark, spark.createDataFrame(entities).limit(0))
    assert none.count() == 0 and none.columns == list(empty.columns)
    with pytest.raises(EntityFrameError, match="lacks column"):
        historical_features(feature_world.settings, spark, entities.drop(columns=["terminal_id"]))
    naive = entities.assign(event_timestamp=entities["event_timestamp"].dt.tz_localize(None))
    with pytest.raises(EntityFrameError, match="timezone-aware"):
        historical_features(feature_world.settings, spark, naive)


# ------------------------------------------------------------------------------ online


def check_online(store, settings, spark, world) -> None:
    day = date(2018, 5, 3)
    materialize(settings, spark, day, store=store)
    entities = entity_frame(world, day, day)
    found = lookup(store, records_of(entities))
    assert_features_equal(found.features, expected_features(world, entities))
    offline = historical_features(settings, spark, entities)
    np.testing.assert_array_equal(found.matrix, offline[list(MODEL_FEATURES)].to_numpy())
    absent = entities["customer_id"] == SPARSE_CUSTOMER  # its last snapshot was 05-02
    assert absent.sum() == 1
    assert list(found.customer_known) == list(~absent)
    assert found.unknown_customers == 1 and found.terminal_known.all()

    # Transactions of 05-04 while only 05-03 is materialized: every entity is unknown (zeros),
    # never served the day before's row.
    later = entity_frame(world, date(2018, 5, 4), date(2018, 5, 4))
    stale = lookup(store, records_of(later))
    assert stale.unknown_customers == len(later) and stale.unknown_terminals == len(later)
    assert (stale.features[[*CUSTOMER_FEATURES, *TERMINAL_FEATURES]] == 0.0).all().all()
    # The fast readers (features.online_reader) serve what the lookup serves, and the snapshot
    # sees the next materialize as a change of the store (SQLite data_version, Redis registry).
    snapshot = open_reader(settings, "snapshot", store=store, background=False)
    direct = open_reader(settings, "direct", store=store)
    try:
        for frame, expected in ((entities, found), (later, stale)):
            for reader in (snapshot, direct):
                rows = reader.read(*reader_args(frame))
                np.testing.assert_array_equal(rows.matrix, expected.matrix)
                np.testing.assert_array_equal(rows.customer_known, expected.customer_known)
        assert snapshot.refresh() is False
        materialize(settings, spark, date(2018, 5, 4), store=store)
        fresh = lookup(store, records_of(later))
        assert_features_equal(fresh.features, expected_features(world, later))
        assert snapshot.refresh() is True
        for reader in (snapshot, direct):
            np.testing.assert_array_equal(reader.read(*reader_args(later)).matrix, fresh.matrix)
    finally:
        snapshot.close()
        direct.close()
    assert len(lookup(store, [])) == 0


def reader_args(entities: pd.DataFrame) -> tuple[np.ndarray, ...]:
    micros = pd.to_datetime(entities["event_timestamp"], utc=True).dt.as_unit("us").astype("int64").to_numpy()
    return (entities["customer_id"].to_numpy(), entities["terminal_id"].to_numpy(),
            entities["tx_amount"].to_numpy(), micros)


def test_online_lookup_after_materialize_sqlite(spark, feature_world) -> None:
    settings = feature_world.settings
    check_online(feature_store(settings), settings, spark, feature_world)


def test_online_lookup_after_materialize_redis(spark, feature_world, redis_server, tmp_path: Path) -> None:
    settings = load_settings(overrides={
        "home": str(feature_world.settings.home_path),
        "feast": {"online_store": "redis", "redis_connection_string": redis_server,
                  "registry": str(tmp_path / "registry.db")},
    })
    store = feature_store(settings)
    check_online(store, settings, spark, feature_world)
    assert store.config.online_store.type == "redis"


def test_feast_cli_with_the_repo_yaml(spark, feature_world, tmp_path: Path) -> None:
    """`feast apply` and `feast materialize-incremental` from features/, configured only by
    the variables `cardscore features env` prints, on the session's engine."""
    from cardscore.core.engine import embedded_url

    settings = load_settings(overrides={
        "home": str(feature_world.settings.home_path),
        "feast": {"registry": str(tmp_path / "cli-registry.db"), "sqlite_path": str(tmp_path / "cli-online.db")},
    })
    dropped = ("SPARK_REMOTE", "PYSPARK_GATEWAY_PORT", "SPARK_CONNECT_MODE_ENABLED")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update({
        "CARDSCORE__HOME": str(settings.home_path),
        "CARDSCORE_FEAST_PROJECT": settings.feast.project,
        "CARDSCORE_FEAST_REGISTRY": settings.feast_registry,
        "CARDSCORE_FEAST_SQLITE_PATH": settings.feast_sqlite_path,
        "SPARK_REMOTE": embedded_url(),
    })
    # Feast's own CLI (its click group, as the `feast` script runs it), from features/; both
    # commands in one interpreter so Feast's slow import is paid once. A first
    # materialize-incremental would start at now - TTL (meant for live days): history starts
    # with an explicit range (here cardscore's, in between), incremental runs continue from it.
    script = (
        "import sys\n"
        "from feast.cli.cli import cli\n"
        "for args in (['apply'], None, ['materialize-incremental', '2018-05-06T00:00:00']):\n"
        "    if args is None:\n"
        "        input()  # wait for the test's own materialize of 2018-05-05\n"
        "        continue\n"
        "    cli.main(args, standalone_mode=False)\n"
        "    print('done', args[0], flush=True)\n"
    )
    errors = tmp_path / "feast-cli.stderr"
    with open(errors, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO / "features", env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_file, text=True)
        try:
            line = ""
            while not line.startswith("done apply"):  # blocks on the child's output, no sleep
                line = proc.stdout.readline()
                assert line or proc.poll() is None, errors.read_text()[-3000:]
            materialize(settings, spark, date(2018, 5, 5))
            out, _ = proc.communicate("\n", timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0, out[-2000:] + errors.read_text()[-3000:]
    assert "done materialize-incremental" in out
    entities = entity_frame(feature_world, date(2018, 5, 6), date(2018, 5, 6))
    found = lookup(feature_store(settings), records_of(entities))
    assert found.unknown_customers == 0 and found.unknown_terminals == 0
    assert_features_equal(found.features, expected_features(feature_world, entities))


# ------------------------------------------------------------------------------ Delta


def test_overwritten_and_merged_days_are_served_not_stale_files(spark, tmp_path: Path) -> None:
    """The offline store reads the Delta table's current version: a day replaced or merged
    serves its new values, although the old Parquet files are still in the folder."""
    from pyspark.sql import functions as F

    from cardscore.core.lake import Lake
    from cardscore.features.store import apply
    from cardscore.features.transform import CUSTOMER_COLUMNS, TERMINAL_COLUMNS

    settings = load_settings(overrides={"home": str(tmp_path / "home")})
    lake = Lake(spark, settings)
    day = date(2018, 5, 3)
    midnight = datetime(2018, 5, 3, tzinfo=UTC)

    def rows(columns, key_values, value, created):
        frame = pd.DataFrame({c: [float(value)] * len(key_values) for c in columns[1:-2]})
        for c in columns[1:-2]:
            if "_nb_tx_" in c:
                frame[c] = frame[c].astype("int64")
        frame.insert(0, columns[0], key_values)
        frame["event_timestamp"] = pd.Timestamp(midnight).as_unit("us")
        frame["created_at"] = pd.Timestamp(created).as_unit("us")
        frame["snapshot_date"] = day
        return spark.createDataFrame(frame)

    created = datetime(2018, 5, 3, 1, tzinfo=UTC)
    lake.overwrite(rows(CUSTOMER_COLUMNS, [1, 2], 1, created), catalog.CUSTOMER_FEATURES, ["snapshot_date"])
    lake.overwrite(rows(TERMINAL_COLUMNS, [9], 1, created), catalog.TERMINAL_FEATURES, ["snapshot_date"])
    apply(settings)
    entities = pd.DataFrame({"transaction_id": [1, 2], "customer_id": [1, 2], "terminal_id": [9, 9],
                             "event_timestamp": [utc("2018-05-03 10:00"), utc("2018-05-03 11:00")],
                             "tx_amount": [1.0, 2.0]})

    def served() -> list[float]:
        return historical_features(settings, spark, entities)[customer_count(1)].tolist()

    assert served() == [1.0, 1.0]
    predicate = "snapshot_date = '2018-05-03'"
    lake.replace_where(rows(CUSTOMER_COLUMNS, [1, 2], 5, created), catalog.CUSTOMER_FEATURES, predicate)
    assert served() == [5.0, 5.0]
    update = rows(CUSTOMER_COLUMNS, [2], 7, datetime(2018, 5, 3, 2, tzinfo=UTC))
    lake.merge(update, catalog.CUSTOMER_FEATURES, keys=["customer_id", "snapshot_date"])
    assert served() == [5.0, 7.0]
    # A reader that ignores the Delta log (Feast's file/dask store) would see every version.
    files = list((settings.home_path / "lake" / "gold" / "customer_features").rglob("*.parquet"))
    stale_reader = pd.concat([pd.read_parquet(f) for f in files])
    assert len(stale_reader) > 2 and set(stale_reader[customer_count(1)]) >= {1, 5, 7}
    assert lake.read(catalog.CUSTOMER_FEATURES).where(F.col("customer_id") == 2).count() == 1
