"""Landing files of a day: list, read, split into numbered lines (exact bytes), with lineage.

Read with pyarrow.fs on the driver, not `spark.read.text`: on Sail one invalid UTF-8 byte fails
the whole read, and its text reader drops the CR that must be rejected; `binaryFile` + an
in-engine split is exact but 10x slower (bench/results/ingest.json, `parts`).

Bounded memory: a file is streamed in blocks of `LINE_BLOCK_BYTES` (SHA-256 updated per
block, lines split across block boundaries exactly) into a Parquet file of numbered lines in
the lake's staging area, which the engine then reads (`lines_frame`). The driver holds one
block and its lines at a time (plus the longest line), whatever the size of a day: a day's
lines never sit in the driver as a whole, nor in a query plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cardscore.core.config.settings import join_uri

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

# How much of a landing file the driver reads at a time (its memory bound, with the lines of
# one block and the longest line).
LINE_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class LandingFile:
    feed: str
    uri: str  # source_file in every table
    path: str  # path inside the filesystem
    size: int


@dataclass(frozen=True)
class StagedFile:
    """A landing file read once: its digest, its line count and where its numbered lines are."""

    file: LandingFile
    sha256: str
    size: int
    line_count: int
    lines_uri: str  # Parquet: line_number bigint, raw_bytes binary


@dataclass
class FileLoad:
    """A file of the day, read and staged, with the lineage of the load that brought it in."""

    staged: StagedFile
    load_id: str
    ingested_at_us: int
    new: bool  # not in the ledger yet: this run loads it into bronze

    @property
    def file(self) -> LandingFile:
        return self.staged.file

    @property
    def sha256(self) -> str:
        return self.staged.sha256

    @property
    def line_count(self) -> int:
        return self.staged.line_count


def day_folder(landing_root: str, feed: str, day: date) -> str:
    return join_uri(landing_root, feed, f"date={day.isoformat()}")


def landing_file_uri(landing_root: str, feed: str, day: date, name: str) -> str:
    """The `source_file` of a landing file: its URI (the name percent-encoded, `=` kept)."""
    return join_uri(day_folder(landing_root, feed, day), quote(name, safe="="))


def list_landing_files(landing_root: str, feed: str, day: date, suffix: str = ".jsonl") -> list[LandingFile] | None:
    """The day's files of a feed, by name; None when the day's folder does not exist."""
    from pyarrow import fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(landing_root)
    folder = f"{root.rstrip('/')}/{feed}/date={day.isoformat()}"
    if filesystem.get_file_info(folder).type != pafs.FileType.Directory:
        return None
    infos = filesystem.get_file_info(pafs.FileSelector(folder, recursive=False))
    files = [
        LandingFile(feed, landing_file_uri(landing_root, feed, day, info.base_name), info.path, int(info.size or 0))
        for info in infos
        if info.type == pafs.FileType.File
        and not info.base_name.startswith((".", "_"))  # writers' temporary and marker files
        and info.base_name.endswith(suffix)
    ]
    return sorted(files, key=lambda f: f.uri)


def iter_line_blocks(landing_root: str, file: LandingFile, block_bytes: int = LINE_BLOCK_BYTES,
                     digest: Any = None) -> Iterator[list[bytes]]:
    """The file's lines (split on `\\n` only, as `split_lines`), a block's worth at a time; the
    bytes read are fed to `digest` on the way."""
    from pyarrow import fs as pafs

    filesystem, _ = pafs.FileSystem.from_uri(landing_root)
    carry = b""
    with filesystem.open_input_stream(file.path) as stream:
        while True:
            block = stream.read(block_bytes)
            if not block:
                break
            if digest is not None:
                digest.update(block)
            lines = (carry + block).split(b"\n")
            carry = lines.pop()  # the unfinished last line (b"" after a final newline)
            if lines:
                yield lines
    if carry:
        yield [carry]


def stage_file_lines(landing_root: str, file: LandingFile, lines_uri: str,
                     block_bytes: int = LINE_BLOCK_BYTES) -> StagedFile:
    """Stream a landing file into a Parquet file of numbered lines (1-based, exact bytes) and
    hash it on the way: one read, memory bounded by the block size."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    digest = hashlib.sha256()
    schema = _staged_lines_schema()
    filesystem, path = pafs.FileSystem.from_uri(lines_uri)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    count = 0
    with pq.ParquetWriter(path, schema, filesystem=filesystem) as writer:
        for lines in iter_line_blocks(landing_root, file, block_bytes, digest):
            numbers = pa.array(range(count + 1, count + len(lines) + 1), pa.int64())
            writer.write_table(pa.table([numbers, pa.array(lines, pa.binary())], schema=schema))
            count += len(lines)
    return StagedFile(file, digest.hexdigest(), file.size, count, lines_uri)


def lines_frame(spark: SparkSession, loads: Iterable[FileLoad], day: date) -> DataFrame:
    """The staged lines of the given loads with their lineage, in `LINES_SCHEMA`, read by the
    engine from the staged Parquet files (nothing of them passes through the driver)."""
    from pyspark.sql import functions as F

    frames = [
        spark.read.parquet(load.staged.lines_uri).select(
            F.lit(load.file.uri).alias("source_file"),
            F.col("line_number").cast("bigint"),
            F.col("raw_bytes").cast("binary"),
            F.lit(load.load_id).alias("load_id"),
            F.timestamp_micros(F.lit(load.ingested_at_us)).alias("ingested_at"),
            F.lit(day).alias("landing_date"),
        )
        for load in loads
    ]
    if not frames:
        return spark.createDataFrame(_empty_lines_table(), schema=LINES_SCHEMA)
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def read_file(landing_root: str, file: LandingFile) -> bytes:
    from pyarrow import fs as pafs

    filesystem, _ = pafs.FileSystem.from_uri(landing_root)
    with filesystem.open_input_stream(file.path) as stream:
        return stream.read()


def split_lines(data: bytes) -> list[bytes]:
    """Lines split on `\\n` only (a CR stays in its line, to be rejected); no empty last line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


LINES_SCHEMA = (
    "source_file string, line_number bigint, raw_bytes binary, load_id string, "
    "ingested_at timestamp, landing_date date"
)


def _staged_lines_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("line_number", pa.int64()), ("raw_bytes", pa.binary())])


def lines_table(files: Iterable[tuple[str, list[bytes]]], load_id: str, ingested_at_us: int, day: date) -> pa.Table:
    """One row per line of in-memory (source_file, lines) pairs: exact bytes, 1-based line
    number, lineage. The job streams files instead (`stage_file_lines`); the ingest benchmark
    keeps this to compare ways of reading lines."""
    import pyarrow as pa

    tables = []
    for uri, lines in files:
        n = len(lines)
        tables.append(
            pa.table(
                {
                    "source_file": pa.array([uri] * n, pa.string()),
                    "line_number": pa.array(range(1, n + 1), pa.int64()),
                    "raw_bytes": pa.array(lines, pa.binary()),
                    "load_id": pa.array([load_id] * n, pa.string()),
                    "ingested_at": pa.array([ingested_at_us] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                    "landing_date": pa.array([day] * n, pa.date32()),
                }
            )
        )
    if not tables:
        return _empty_lines_table()
    return pa.concat_tables(tables)


def _empty_lines_table() -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {
            "source_file": pa.array([], pa.string()),
            "line_number": pa.array([], pa.int64()),
            "raw_bytes": pa.array([], pa.binary()),
            "load_id": pa.array([], pa.string()),
            "ingested_at": pa.array([], pa.timestamp("us", tz="UTC")),
            "landing_date": pa.array([], pa.date32()),
        }
    )


def sql_string(value: str) -> str:
    """A SQL string literal of `value` (for predicates naming landing files)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
