"""Prometheus metrics that stay in this process, whatever Feast does to prometheus_client.

Importing `feast.metrics` (Feast does it lazily, on its first online read) sets
PROMETHEUS_MULTIPROC_DIR, and prometheus_client then keeps the values of metrics created
afterwards in shared mmap files, so two services in one process (tests, benchmarks) would
count into each other. Metrics created inside `in_process_values()` use plain in-process
values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import values


@contextmanager
def in_process_values() -> Iterator[None]:
    saved = values.ValueClass
    values.ValueClass = values.MutexValue
    try:
        yield
    finally:
        values.ValueClass = saved
