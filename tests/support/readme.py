"""The README's shell blocks, so that tests run its commands as written."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def bash_block(containing: str, document: Path = REPO / "README.md") -> str:
    """The one ```bash block of `document` that contains `containing`."""
    blocks = [b for b in _FENCE.findall(document.read_text(encoding="utf-8")) if containing in b]
    if len(blocks) != 1:
        raise AssertionError(f"{document.name}: expected one bash block with {containing!r}, found {len(blocks)}")
    return blocks[0]
