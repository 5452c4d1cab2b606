"""One Delta table, three writers taking turns: JVM Spark with the Delta 4.4 jars (through the
cluster's Connect server), Sail, and delta-rs (`deltalake`). Append, replaceWhere, overwrite by
predicate and MERGE (SQL on the engines, delta-rs's own merge), a checkpoint from each side.
After every commit all three read the same rows at the expected version; time travel and the
history agree at the end.

Also here: the Spark Connect type quirk `cardscore.core.spark_types` works around (a `StringType()`
object cast through Connect becomes `string collate UTF8_BINARY`, which delta-rs refuses).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from cardscore.core.config import load_settings
from cardscore.core.lake import Lake
from tests.cluster.commands import CLUSTER_TIMEOUT

pytestmark = [pytest.mark.classic, pytest.mark.timeout(CLUSTER_TIMEOUT)]

COLUMNS = ["id", "day", "amount", "note", "ts"]
SCHEMA = "id bigint, day date, amount double, note string, ts timestamp"
D1, D2, D3, D4 = (date(2018, 4, d) for d in (1, 2, 3, 4))


def rows(*specs: tuple[int, date, float]) -> pd.DataFrame:
    """Rows (id, day, amount); note and ts derived from them (ts in microseconds, UTC)."""
    frame = pd.DataFrame(specs, columns=["id", "day", "amount"])
    frame["note"] = [f"n{i}-{a}" for i, a in zip(frame["id"], frame["amount"], strict=True)]
    frame["ts"] = [pd.Timestamp(datetime(d.year, d.month, d.day, 12), tz="UTC") + pd.Timedelta(microseconds=i)
                   for i, d in zip(frame["id"], frame["day"], strict=True)]
    frame["ts"] = frame["ts"].dt.as_unit("us")
    return frame[COLUMNS]


def normalized(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by id with plain types: day as date, ts as epoch microseconds (UTC)."""
    out = frame[COLUMNS].copy()
    out["day"] = pd.to_datetime(out["day"]).dt.date
    out["ts"] = pd.to_datetime(out["ts"], utc=True).dt.as_unit("us").astype("int64")
    out["id"] = out["id"].astype("int64")
    return out.sort_values("id").reset_index(drop=True)


class Table:
    """The table under test, its expected content, and the three writers and readers."""

    def __init__(self, sail, jvm, home: Path) -> None:
        settings = load_settings(overrides={"home": str(home)})
        self.name = "ops.interop"
        self.sail, self.jvm = Lake(sail, settings), Lake(jvm, settings)
        self.uri = self.sail.uri(self.name)
        self.expected = pd.DataFrame(columns=COLUMNS)
        self.snapshots: dict[int, pd.DataFrame] = {}

    def frame(self, lake: Lake, data: pd.DataFrame):
        return lake.spark.createDataFrame(data.astype({"ts": "datetime64[us, UTC]"}), SCHEMA)

    # expected-state helpers
    def add(self, data: pd.DataFrame) -> None:
        self.expected = pd.concat([self.expected, data], ignore_index=True) if len(self.expected) else data

    def upsert(self, data: pd.DataFrame) -> None:
        kept = self.expected[~self.expected["id"].isin(data["id"])]
        self.expected = pd.concat([kept, data], ignore_index=True)

    def replace_day(self, day: date, data: pd.DataFrame) -> None:
        kept = self.expected[self.expected["day"] != day]
        self.expected = pd.concat([kept, data], ignore_index=True)

    def check(self, version: int) -> None:
        """delta-rs, Sail and JVM Spark all read the expected rows at `version`."""
        want = normalized(self.expected)
        table = DeltaTable(self.uri)
        assert table.version() == version
        assert normalized(table.to_pandas()).equals(want), "delta-rs"
        for reader in (self.sail, self.jvm):
            got = normalized(reader.spark.read.format("delta").load(self.uri).toPandas())
            assert got.equals(want), f"{reader.spark} at version {version}"
        self.snapshots[version] = want


def test_alternating_writers_keep_one_consistent_table(spark, jvm_spark, tmp_path: Path) -> None:
    t = Table(spark, jvm_spark, tmp_path / "home")

    first = rows((1, D1, 10.0), (2, D1, 20.0), (3, D2, 30.0), (4, D2, 40.0))
    t.jvm.append(t.frame(t.jvm, first), t.name, partition_by=["day"])  # v0: JVM creates it
    t.add(first)
    t.check(0)
    # v1: JVM asks for a checkpoint every 4 commits (whoever writes v4, v8 ... may write one)
    jvm_spark.sql(f"ALTER TABLE delta.`{t.uri}` SET TBLPROPERTIES ('delta.checkpointInterval' = '4')").collect()
    t.check(1)

    more = rows((5, D3, 50.0), (6, D3, 60.0))
    t.sail.append(t.frame(t.sail, more), t.name, partition_by=["day"])  # v2: Sail appends
    t.add(more)
    t.check(2)

    rs = rows((7, D3, 70.0))
    write_deltalake(t.uri, rs, mode="append")  # v3: delta-rs appends
    t.add(rs)
    t.check(3)

    day2 = rows((3, D2, 33.0), (8, D2, 80.0))  # v4: JVM replaces day 2
    t.jvm.replace_where(t.frame(t.jvm, day2), t.name, f"day = DATE'{D2}'", partition_by=["day"])
    t.replace_day(D2, day2)
    t.check(4)

    merge = rows((1, D1, 11.0), (9, D4, 90.0))  # v5: Sail MERGE (SQL): update 1, insert 9
    t.sail.merge(t.frame(t.sail, merge), t.name, keys=["id"], partition_by=["day"])
    t.upsert(merge)
    t.check(5)

    merge = rows((5, D3, 55.0), (10, D4, 100.0))  # v6: JVM MERGE (SQL): update 5, insert 10
    t.jvm.merge(t.frame(t.jvm, merge), t.name, keys=["id"], partition_by=["day"])
    t.upsert(merge)
    t.check(6)

    merge = rows((7, D3, 77.0), (11, D4, 110.0))  # v7: delta-rs merge: update 7, insert 11
    (DeltaTable(t.uri).merge(merge, "t.id = s.id", source_alias="s", target_alias="t")
     .when_matched_update_all().when_not_matched_insert_all().execute())
    t.upsert(merge)
    t.check(7)

    day1 = rows((12, D1, 120.0))  # v8: Sail replaces day 1 (ids 1, 2 go)
    t.sail.replace_where(t.frame(t.sail, day1), t.name, f"day = DATE'{D1}'", partition_by=["day"])
    t.replace_day(D1, day1)
    t.check(8)

    day3 = rows((13, D3, 130.0))  # v9: delta-rs overwrites day 3 by predicate
    write_deltalake(t.uri, day3, mode="overwrite", predicate=f"day = '{D3}'")
    t.replace_day(D3, day3)
    t.check(9)

    late = rows((14, D4, 140.0))  # v10: JVM appends; then delta-rs writes a checkpoint of v10
    t.jvm.append(t.frame(t.jvm, late), t.name, partition_by=["day"])
    t.add(late)
    t.check(10)
    DeltaTable(t.uri).create_checkpoint()

    merge = rows((12, D1, 121.0))  # v11: JVM MERGE on top of delta-rs's checkpoint
    t.jvm.merge(t.frame(t.jvm, merge), t.name, keys=["id"], partition_by=["day"])
    t.upsert(merge)
    t.check(11)

    log = Path(t.uri.removeprefix("file://")) / "_delta_log"
    checkpoints = sorted(p.name for p in log.glob("*.checkpoint*.parquet"))
    # JVM wrote v4 and honoured the interval; delta-rs wrote v10's on request
    assert {"00000000000000000004.checkpoint.parquet", "00000000000000000010.checkpoint.parquet"} <= set(
        checkpoints), checkpoints

    # Time travel: every reader sees old versions (before and after the checkpoints) as they were.
    for version in (0, 4, 9):
        want = t.snapshots[version]
        table = DeltaTable(t.uri, version=version)
        assert normalized(table.to_pandas()).equals(want), f"delta-rs v{version}"
        for reader in (spark, jvm_spark):
            got = reader.read.format("delta").option("versionAsOf", version).load(t.uri).toPandas()
            assert normalized(got).equals(want), f"{reader} v{version}"
    # One history, whoever reads it: JVM's DESCRIBE HISTORY and delta-rs's agree.
    jvm_history = jvm_spark.sql(f"DESCRIBE HISTORY delta.`{t.uri}`").select("version", "operation").collect()
    rs_history = DeltaTable(t.uri).history()
    assert sorted(r.version for r in jvm_history) == list(range(12))
    assert {r.version: r.operation for r in jvm_history}[6] == "MERGE"
    assert [h["version"] for h in rs_history] == list(range(11, -1, -1))
    assert DeltaTable(t.uri).protocol().min_reader_version == 1


def _schema_string(uri: str) -> str:
    first = Path(uri.removeprefix("file://")) / "_delta_log" / "00000000000000000000.json"
    for line in first.read_text().splitlines():
        action = json.loads(line)
        if "metaData" in action:
            return action["metaData"]["schemaString"]
    raise AssertionError("no metaData action")


def test_through_connect_string_casts_and_udf_outputs_are_collated(jvm_spark, tmp_path: Path) -> None:
    """The Spark Connect quirk behind `cardscore.core.spark_types`: through the JVM Connect server,
    `cast(StringType())` and a pandas UDF's string output store `string collate UTF8_BINARY`,
    which delta-rs refuses; `ddl_type` casts and `plain_strings` store `string`. When the
    first half of this test fails, Spark has changed and the helpers can go."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    from cardscore.core.spark_types import ddl_type, plain_strings

    def identity(batches):
        yield from batches

    def write(df, name: str) -> str:
        uri = (tmp_path / name).as_uri()
        df.write.format("delta").save(uri)
        return uri

    source = jvm_spark.createDataFrame([("a", 1)], "s string, n bigint")
    quirky = [
        write(jvm_spark.range(2).select(F.col("id").cast(StringType()).alias("s")), "cast_object"),
        write(source.mapInPandas(identity, "s string, n bigint"), "udf_ddl_schema"),
    ]
    for uri in quirky:
        assert "string collate UTF8_BINARY" in _schema_string(uri), uri
        with pytest.raises(Exception, match="collate"):
            DeltaTable(uri)

    plain = write(jvm_spark.range(2).select(F.col("id").cast(ddl_type(StringType())).alias("s")), "cast_ddl")
    assert "collate" not in _schema_string(plain)
    assert sorted(DeltaTable(plain).to_pandas()["s"]) == ["0", "1"]
    udf = write(source.mapInPandas(identity, source.schema).transform(plain_strings), "udf_plain")
    assert "collate" not in _schema_string(udf)
    assert DeltaTable(udf).to_pandas().to_dict("records") == [{"s": "a", "n": 1}]
