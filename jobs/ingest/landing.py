"""Landing files of a day: list, read, split into numbered lines (exact bytes), with lineage.

Read with pyarrow.fs on the driver, not `spark.read.text`: on Sail one invalid UTF-8 byte fails
the whole read, and its text reader drops the CR that must be rejected; `binaryFile` + an
in-engine split is exact but 10x slower (bench/results/ingest.json, `parts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import quote

from cardscore.core.config.settings import join_uri

if TYPE_CHECKING:
    import pyarrow as pa



@dataclass(frozen=True)
class LandingFile:
    feed: str
    uri: str  # source_file in every table
    path: str  # path inside the filesystem
    size: int


@dataclass
class FileLoad:
    """A file of the day, read, with the lineage of the load that brought it in."""

    file: LandingFile
    data: bytes
    sha256: str
    load_id: str
    ingested_at_us: int
    new: bool  # not in the ledger yet: this run loads it into bronze
    lines: list[bytes] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.lines = split_lines(self.data)


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


def lines_table(loads: Iterable[FileLoad], day: date) -> pa.Table:
    """One row per line of the given files: exact bytes, 1-based line number, lineage."""
    import pyarrow as pa

    tables = []
    for load in loads:
        lines = load.lines
        n = len(lines)
        tables.append(
            pa.table(
                {
                    "source_file": pa.array([load.file.uri] * n, pa.string()),
                    "line_number": pa.array(range(1, n + 1), pa.int64()),
                    "raw_bytes": pa.array(lines, pa.binary()),
                    "load_id": pa.array([load.load_id] * n, pa.string()),
                    "ingested_at": pa.array([load.ingested_at_us] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
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
