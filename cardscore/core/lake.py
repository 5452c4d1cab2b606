"""Delta tables by logical name: read, append, overwrite a partition, MERGE, version, history.

Writes go through the DataFrame API and SQL `MERGE INTO` only, so the same code runs on classic
Spark with the Delta jars and on any Spark Connect engine (Sail included). Table versions and
history come from delta-rs (`deltalake`), which reads the same transaction log, because Sail
has no `DESCRIBE HISTORY`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cardscore.core.config import Settings
from cardscore.core.config.settings import join_uri

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class TableNotFoundError(LookupError):
    """The logical table has no Delta table at its location yet."""


class Lake:
    """The project's Delta tables under `lake.root`."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings
        self.root = settings.lake_root

    # ---------------------------------------------------------------- locations

    def uri(self, table: str) -> str:
        parts = table.split(".")
        if len(parts) != 2 or not all(p.replace("_", "").isalnum() for p in parts):
            raise ValueError(f"table names look like 'layer.name', got {table!r}")
        return join_uri(self.root, *parts)

    def _delta_table(self, table: str, version: int | None = None) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError as DeltaRsNotFound

        try:
            return DeltaTable(
                self.uri(table), version=version, storage_options=self.settings.lake.storage_options or None
            )
        except DeltaRsNotFound:
            raise TableNotFoundError(f"table {table} does not exist at {self.uri(table)}") from None

    def exists(self, table: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(
            self.uri(table), storage_options=self.settings.lake.storage_options or None
        )

    # ---------------------------------------------------------------- reads

    def read(self, table: str, version: int | None = None) -> DataFrame:
        if not self.exists(table):
            raise TableNotFoundError(f"table {table} does not exist at {self.uri(table)}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        df = reader.load(self.uri(table))
        # Engines differ in where they put partition columns (Sail: last); give the table's order.
        order = [f.name for f in self._delta_table(table, version).schema().fields]
        return df.select(*order) if df.columns != order else df

    def version(self, table: str) -> int | None:
        """Current version of the table, or None if it does not exist yet."""
        if not self.exists(table):
            return None
        return int(self._delta_table(table).version())

    def partitions_changed(self, table: str, since: int | None, column: str) -> set[str] | None:
        """Values of partition `column` whose files differ between version `since` (None: before
        the table existed) and now: what the commits since then added or removed. None when it
        cannot be told (that version's log is gone): the caller takes it as changed."""
        import pyarrow as pa

        def files(version: int | None) -> dict[str, str]:
            if version is None:
                return {}
            actions = pa.table(self._delta_table(table, version).get_add_actions(flatten=True))
            values = actions.column(f"partition.{column}").to_pylist()
            return {path: str(value) for path, value in zip(actions.column("path").to_pylist(), values, strict=True)}

        try:
            before, now = files(since), files(self.version(table))
        except Exception:  # a vacuumed or cleaned-up log, a dropped partition column
            return None
        return {now.get(p, before.get(p, "")) for p in set(before) ^ set(now)}

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first: version, timestamp, operation, parameters, metrics."""
        return list(self._delta_table(table).history(limit))

    # ---------------------------------------------------------------- writes

    def append(self, df: DataFrame, table: str, partition_by: Sequence[str] = ()) -> int | None:
        self._writer(df, "append", partition_by).save(self.uri(table))
        return self.version(table)

    def overwrite(self, df: DataFrame, table: str, partition_by: Sequence[str] = ()) -> int | None:
        self._writer(df, "overwrite", partition_by).option("overwriteSchema", "true").save(
            self.uri(table)
        )
        return self.version(table)

    def replace_where(
        self, df: DataFrame, table: str, predicate: str, partition_by: Sequence[str] = (),
        merge_schema: bool = False,
    ) -> int | None:
        """Atomically replace the rows matching `predicate` (e.g. one day) with `df`.

        Creates the table if it does not exist. Every row of `df` must match the predicate.
        `merge_schema`: columns of `df` the table lacks are added (nullable; other rows read null).
        """
        if not self.exists(table):
            return self.append(df, table, partition_by)
        writer = self._writer(df, "overwrite", partition_by).option("replaceWhere", predicate)
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
        writer.save(self.uri(table))
        return self.version(table)

    def merge(
        self,
        df: DataFrame,
        table: str,
        keys: Sequence[str],
        partition_by: Sequence[str] = (),
        when_matched_update: bool = True,
        matched_condition: str | None = None,
    ) -> int | None:
        """Upsert `df` into `table` on `keys` through SQL MERGE INTO (creates the table if new).

        `matched_condition` (SQL over `t.` target and `s.` source) limits which matches update,
        e.g. "s.reported_time > t.reported_time" so a late older record never wins.
        """
        if not keys:
            raise ValueError("merge needs at least one key column")
        if not self.exists(table):
            return self.append(df, table, partition_by)
        view = f"cardscore_merge_src_{uuid.uuid4().hex}"
        df.createOrReplaceTempView(view)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        clauses = []
        if when_matched_update:
            cond = f" AND ({matched_condition})" if matched_condition else ""
            clauses.append(f"WHEN MATCHED{cond} THEN UPDATE SET *")
        clauses.append("WHEN NOT MATCHED THEN INSERT *")
        try:
            self.spark.sql(
                f"MERGE INTO delta.`{self.uri(table)}` AS t USING {view} AS s ON {on} "
                + " ".join(clauses)
            ).collect()
        finally:
            self.spark.catalog.dropTempView(view)
        return self.version(table)

    @staticmethod
    def _writer(df: DataFrame, mode: str, partition_by: Sequence[str]) -> Any:
        writer = df.write.format("delta").mode(mode)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        return writer


def delete_folder(uri: str) -> bool:
    """Delete the folder at `uri` (a staging area) if it exists; True if something was deleted."""
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    if filesystem.get_file_info(path).type == fs.FileType.NotFound:
        return False
    filesystem.delete_dir(path)
    return True


def discard_staging(uri: str, stage: str) -> None:
    """Best-effort removal of a run's staging folder: a leftover costs only space, so a
    published run never fails over it (the failure is logged)."""
    try:
        delete_folder(uri)
    except Exception as exc:
        from cardscore.core.logs import get_logger

        get_logger("cardscore.lake").warning("staging.not_removed", stage=stage, uri=uri, error=str(exc))
