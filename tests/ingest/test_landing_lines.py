"""Landing files are read in bounded blocks: the lines, their numbers and the SHA-256 are exactly
those of reading the whole file at once, wherever the block boundaries fall."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cardscore.jobs.ingest.landing import (
    LandingFile,
    iter_line_blocks,
    split_lines,
    stage_file_lines,
)

CONTENTS = {
    "plain": b'{"a": 1}\n{"a": 2}\n',
    "no final newline": b'{"a": 1}\n{"a": 2}',
    "empty lines and CR": b"\n\r\n{}\r\n\n\nlast\r",
    "invalid utf-8 and BOM": b"\xef\xbb\xbf{}\n\xff\xfe\x00broken\n\xc3(\n",
    "one long line": b"x" * 1000 + b"\n" + b"y" * 10,
    "empty": b"",
    "only newlines": b"\n\n\n",
}


def _landing(tmp_path: Path, data: bytes) -> tuple[str, LandingFile]:
    folder = tmp_path / "landing" / "transactions" / "date=2018-04-01"
    folder.mkdir(parents=True)
    path = folder / "part.jsonl"
    path.write_bytes(data)
    return tmp_path.joinpath("landing").as_uri(), LandingFile("transactions", path.as_uri(), str(path), len(data))


@pytest.mark.parametrize("name", sorted(CONTENTS))
@pytest.mark.parametrize("block_bytes", [1, 2, 3, 7, 64, 1 << 20])
def test_blocks_give_the_lines_of_the_whole_file(tmp_path: Path, name: str, block_bytes: int) -> None:
    data = CONTENTS[name]
    root, file = _landing(tmp_path, data)
    digest = hashlib.sha256()
    lines = [line for block in iter_line_blocks(root, file, block_bytes, digest) for line in block]
    assert lines == split_lines(data)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("block_bytes", [3, 1 << 20])
def test_staged_lines_are_numbered_exact_bytes(tmp_path: Path, block_bytes: int) -> None:
    data = b"".join(CONTENTS[name] + b"\n" for name in sorted(CONTENTS))
    root, file = _landing(tmp_path, data)
    target = tmp_path / "staging" / "lines" / "00000.parquet"
    staged = stage_file_lines(root, file, target.as_uri(), block_bytes)
    table = pq.read_table(target)
    assert staged.line_count == table.num_rows == len(split_lines(data))
    assert table.column("line_number").to_pylist() == list(range(1, staged.line_count + 1))
    assert table.column("raw_bytes").to_pylist() == split_lines(data)
    assert staged.sha256 == hashlib.sha256(data).hexdigest() and staged.size == len(data)
    assert date(2018, 4, 1).isoformat() in staged.file.uri
