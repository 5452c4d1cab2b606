"""How `make test` splits the suite over pytest-xdist workers: by top-level test folder.

A folder's tests run on one worker, in order, so the folder's session fixtures (a demo run, an
Airflow home, a scoring world) start once. The folders that start JVMs (`cluster`: the
standalone Spark cluster and its Connect server; `kafka`: Apache Kafka brokers) and every file
with `classic` (local JVM Spark) tests form one group, `jvm`: one JVM workload at a time on the
2 cores (the other workers take the other folders).

`tests/conftest.py` installs this scheduler for `--dist loadgroup`: pytest-xdist's own reads
`xdist_group` marks into node ids, which pytest 9 no longer lets a plugin rewrite (its items'
ids are read-only), so marks would be silently ignored; this one groups by the node id's path.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
JVM_FOLDERS = frozenset({"cluster", "kafka"})


@cache
def classic_files() -> frozenset[str]:
    """Test files (paths relative to the repository) that hold `classic` tests."""
    root = TESTS.parent
    return frozenset(str(p.relative_to(root)) for p in TESTS.rglob("test_*.py")
                     if "mark.classic" in p.read_text(encoding="utf-8"))


def group_of(nodeid: str) -> str:
    """The worker group of a test node id (`tests/<folder>/...::name`)."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else "top"
    return "jvm" if folder in JVM_FOLDERS or path in classic_files() else folder


def folder_scheduling(config, log):
    """A LoadScopeScheduling whose scope is `group_of` (groups with the most tests queued first)."""
    from xdist.scheduler import LoadScopeScheduling

    class FolderScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return FolderScheduling(config, log)
