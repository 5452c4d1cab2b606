"""Peak resident memory of a stage: this process and its children, sampled while it runs.

    with PeakRSS() as rss:
        run_the_stage()
    rss.result()   # {"start_mb": ..., "peak_mb": ..., "growth_mb": ...}

The embedded engine (Sail) and its Python workers run inside this process, so on the embedded
engine the tree's RSS is the whole pipeline's memory. With a remote engine (Spark Connect) it
is the driver's only: the engine's processes are not children and are not counted.

Sampling (every `interval` seconds, from /proc) can miss a peak shorter than the interval;
the kernel's high-water mark of this process (`ru_maxrss`) is reported next to it as a bound.
"""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss_bytes(pid: int | None = None, children: bool = True) -> int:
    """Resident bytes of a process and (`children`) all its descendants (0 for a process that
    vanished)."""
    root = os.getpid() if pid is None else pid
    total, todo, seen = 0, [root], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            pages = int(Path(f"/proc/{current}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += pages * _PAGE
        if not children:
            break
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return total


class PeakRSS:
    """Context manager sampling the process tree's RSS in a background thread."""

    def __init__(self, interval: float = 0.05, children: bool = True) -> None:
        self.interval = interval
        self.children = children  # False: this process alone (its children come and go elsewhere)
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = tree_rss_bytes(children=self.children)
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.peak = max(self.peak, tree_rss_bytes(children=self.children))

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss_bytes(children=self.children))

    def result(self) -> dict[str, Any]:
        mb = 1024 * 1024
        return {
            "start_mb": round(self.start / mb, 1),
            "peak_mb": round(self.peak / mb, 1),
            "growth_mb": round((self.peak - self.start) / mb, 1),
            # Linux reports ru_maxrss in KiB: this process's high-water mark since it started.
            "process_high_water_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
