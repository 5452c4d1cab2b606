"""`python -m bench [--list] [NAME [options...]]`: run one benchmark, or all of them in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

HELPERS = {"common", "memory", "linear_baseline", "handbook_features"}  # shared code, not benchmarks


def benchmarks() -> list[str]:
    """Modules of this package that define `main(argv)` (found without importing them)."""
    folder = Path(__file__).parent
    names = []
    for module in pkgutil.iter_modules([str(folder)]):
        if module.name.startswith("_") or module.name in HELPERS:
            continue
        source = (folder / f"{module.name}.py").read_text()
        if "\ndef main(" in source:
            names.append(module.name)
    return sorted(names)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    available = benchmarks()
    if args and args[0] in ("-h", "--help", "--list"):
        print(__doc__.strip())
        print("benchmarks: " + ", ".join(available))
        return 0
    if args:
        name, rest = args[0], args[1:]
        if name not in available:
            print(f"unknown benchmark {name!r}; available: {', '.join(available)}", file=sys.stderr)
            return 2
        return int(importlib.import_module(f"bench.{name}").main(rest) or 0)
    failed = 0
    for name in available:
        print(f"== bench {name}", flush=True)
        failed += int(importlib.import_module(f"bench.{name}").main([]) or 0) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
