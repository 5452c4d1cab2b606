"""Writing a world to the landing zone the way a real upstream would, and reading it back.

Layout under the landing URI (any `pyarrow.fs` URI: file://, s3://, gs://, abfs://):

    transactions/date=YYYY-MM-DD/transactions-YYYY-MM-DD.jsonl   one per simulated day
    labels/date=YYYY-MM-DD/labels-YYYY-MM-DD.jsonl               by the day the label arrives
    reference/customers.parquet, reference/terminals.parquet
    _simulation/manifest.json, truth.parquet, compromised_*.parquet  (analysis only)

Every file is written under a hidden temporary name (`.name.tmp-<uuid>`, which Spark and
our readers skip) and renamed into place, so readers never see half a file. The manifest is
written last: its presence means the world is complete.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from cardscore.core.config.simulator import SimulatorSettings
from cardscore.schemas.serialization import label_event_lines, transaction_event_lines
from cardscore.simulator.transactions import SECONDS_PER_DAY, day_start_micros, to_micros
from cardscore.simulator.world import GENERATOR_VERSION, ProgressFn, World

FEEDS = ("transactions", "labels")
OWNED_FOLDERS = ("transactions", "labels", "reference", "_simulation")
MANIFEST = "_simulation/manifest.json"
_DAY_MICROS = SECONDS_PER_DAY * 1_000_000


class LandingConflictError(RuntimeError):
    """The landing folder holds a different world; pass overwrite=True to replace it."""


# ---------------------------------------------------------------- paths


def landing_file(feed: str, day: date) -> str:
    """Path of a feed's file for a day, relative to the landing root."""
    if feed not in FEEDS:
        raise ValueError(f"unknown feed {feed!r}; expected one of {FEEDS}")
    iso = day.isoformat()
    return f"{feed}/date={iso}/{feed}-{iso}.jsonl"


def _open(landing_uri: str) -> tuple[pafs.FileSystem, str]:
    filesystem, root = pafs.FileSystem.from_uri(landing_uri)
    return filesystem, root.rstrip("/")


# ---------------------------------------------------------------- reading


def read_landing_day(landing_uri: str, day: date, feed: str = "transactions") -> list[bytes]:
    """The raw lines (no newline) of one day's file, in file order (= event-time order)."""
    filesystem, root = _open(landing_uri)
    path = f"{root}/{landing_file(feed, day)}"
    try:
        with filesystem.open_input_stream(path) as stream:
            data = stream.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"no {feed} landing file for {day}: {path}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def read_manifest(landing_uri: str) -> dict[str, Any] | None:
    """The simulation manifest, or None when the landing folder has none."""
    filesystem, root = _open(landing_uri)
    try:
        with filesystem.open_input_stream(f"{root}/{MANIFEST}") as stream:
            return json.loads(stream.read())
    except FileNotFoundError:
        return None


def _identity(params: SimulatorSettings) -> dict[str, Any]:
    """What makes two worlds the same: the generator version and every parameter."""
    return {"generator_version": GENERATOR_VERSION, "parameters": params.model_dump(mode="json")}


def check_landing(landing_uri: str, params: SimulatorSettings, overwrite: bool = False) -> str:
    """Whether `params` may be written there: "empty", "same" (an identical rewrite) or
    "replace" (overwrite of a different world). Raises LandingConflictError otherwise."""
    existing = read_manifest(landing_uri)
    if existing is not None:
        same = {k: existing.get(k) for k in ("generator_version", "parameters")} == _identity(
            params
        )
        if same:
            return "same"
        if not overwrite:
            changed = _changed_parameters(
                existing.get("parameters") or {}, _identity(params)["parameters"]
            )
            raise LandingConflictError(
                f"{landing_uri} already holds a simulated world with other parameters "
                f"({', '.join(changed) or 'generator version'}); use --overwrite to replace it"
            )
        return "replace"
    if _has_owned_files(landing_uri):
        if not overwrite:
            raise LandingConflictError(
                f"{landing_uri} holds landing files but no simulation manifest (an interrupted "
                "run, or another producer's data); use --overwrite to replace them"
            )
        return "replace"
    return "empty"


def _changed_parameters(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


def _has_owned_files(landing_uri: str) -> bool:
    filesystem, root = _open(landing_uri)
    for folder in OWNED_FOLDERS:
        selector = pafs.FileSelector(f"{root}/{folder}", allow_not_found=True, recursive=True)
        if any(info.type == pafs.FileType.File for info in filesystem.get_file_info(selector)):
            return True
    return False


# ---------------------------------------------------------------- writing


def write_landing(
    world: World,
    landing_uri: str,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write the world's landing files; returns the manifest (with this run's timings).

    Idempotent: the same parameters give byte-identical files. The manifest file keeps the
    timings of the run that first wrote it, so a rerun leaves it untouched as well.
    A different world already there raises LandingConflictError unless `overwrite`, which
    first deletes the simulator's folders (transactions, labels, reference, _simulation).
    """
    report = progress or (lambda phase, done, total: None)
    started = time.perf_counter()
    state = check_landing(landing_uri, world.params, overwrite)
    filesystem, root = _open(landing_uri)
    if state == "replace":
        for folder in OWNED_FOLDERS:
            if filesystem.get_file_info(f"{root}/{folder}").type == pafs.FileType.Directory:
                filesystem.delete_dir(f"{root}/{folder}")

    writer = _Writer(filesystem, root)
    params = world.params
    start_us = day_start_micros(params.start_date)
    tx = world.transactions
    labels = world.labels

    # Transactions: one file per simulated day (empty when a day had none).
    tx_bounds = np.searchsorted(
        tx["tx_time_days"].to_numpy(), np.arange(params.n_days + 1), side="left"
    )
    per_day_tx = np.diff(tx_bounds)
    frauds_per_day = np.bincount(
        tx["tx_time_days"].to_numpy()[tx["tx_fraud"].to_numpy() == 1], minlength=params.n_days
    )
    for d in range(params.n_days):
        day = params.start_date + timedelta(days=d)
        chunk = tx.iloc[tx_bounds[d] : tx_bounds[d + 1]]
        writer.put(landing_file("transactions", day), _jsonl(transaction_event_lines(chunk)))
        report("transaction files", d + 1, params.n_days)

    # Labels: by the UTC day they arrive, from the first simulated day to the last arrival.
    label_day = (to_micros(labels["reported_time"]) - start_us) // _DAY_MICROS
    n_label_days = max(params.n_days, int(label_day.max()) + 1 if label_day.size else 0)
    label_bounds = np.searchsorted(label_day, np.arange(n_label_days + 1), side="left")
    for d in range(n_label_days):
        day = params.start_date + timedelta(days=d)
        chunk = labels.iloc[label_bounds[d] : label_bounds[d + 1]]
        writer.put(landing_file("labels", day), _jsonl(label_event_lines(chunk)))
        report("label files", d + 1, n_label_days)

    report("reference", 0, 2)
    writer.put("reference/customers.parquet", _parquet(world.customers))
    report("reference", 1, 2)
    writer.put("reference/terminals.parquet", _parquet(world.terminals))
    report("reference", 2, 2)

    report("truth", 0, 1)
    writer.put(
        "_simulation/truth.parquet",
        _parquet(tx[["transaction_id", "tx_fraud", "tx_fraud_scenario"]]),
    )
    writer.put("_simulation/compromised_terminals.parquet", _parquet(world.compromised_terminals))
    writer.put("_simulation/compromised_customers.parquet", _parquet(world.compromised_customers))
    report("truth", 1, 1)

    labels_per_day = np.diff(label_bounds)
    n_tx = len(tx)
    n_fraud = int(tx["tx_fraud"].sum())
    counts = world.reach.counts
    manifest: dict[str, Any] = {
        "generator": "cardscore.simulator",
        **_identity(params),
        "seed": params.seed,
        # numpy's Generator streams may change between numpy releases: recorded, so a rewrite
        # under another numpy that changes the data also shows in the manifest.
        "numpy": np.__version__,
        "totals": {
            "customers": len(world.customers),
            "terminals": len(world.terminals),
            "customers_without_terminals": int((counts == 0).sum()),
            "mean_terminals_per_customer": round(float(counts.mean()), 4) if counts.size else 0.0,
            "transactions": n_tx,
            "frauds": n_fraud,
            "fraud_rate": round(n_fraud / n_tx, 6) if n_tx else 0.0,
            "labels": len(labels),
            "transaction_files": params.n_days,
            "label_files": n_label_days,
        },
        "frauds_per_scenario": world.fraud_counts(),
        "days": [
            {
                "date": (params.start_date + timedelta(days=d)).isoformat(),
                "transactions": int(per_day_tx[d]) if d < params.n_days else 0,
                "frauds": int(frauds_per_day[d]) if d < params.n_days else 0,
                "labels": int(labels_per_day[d]),
            }
            for d in range(n_label_days)
        ],
    }
    previous = read_manifest(landing_uri)
    manifest["timing"] = {
        "generation_seconds": round(world.generation_seconds, 3),
        "write_seconds": round(time.perf_counter() - started, 3),
    }
    if previous is None or _without_timing(previous) != _without_timing(manifest):
        writer.put(MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _without_timing(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != "timing"}


def _jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _parquet(frame: Any) -> bytes:
    # From plain arrays (no pandas metadata) so the bytes depend on the data only.
    table = pa.table({name: pa.array(frame[name].to_numpy()) for name in frame.columns})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class _Writer:
    """Writes whole files atomically: a hidden temporary name, then a rename into place."""

    def __init__(self, filesystem: pafs.FileSystem, root: str) -> None:
        self.filesystem = filesystem
        self.root = root
        self._made: set[str] = set()

    def put(self, relative: str, data: bytes) -> None:
        path = f"{self.root}/{relative}"
        folder, _, name = path.rpartition("/")
        if folder not in self._made:
            self.filesystem.create_dir(folder, recursive=True)
            self._made.add(folder)
        temporary = f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"
        try:
            with self.filesystem.open_output_stream(temporary) as out:
                out.write(data)
            self.filesystem.move(temporary, path)
        except BaseException:
            if _exists(self.filesystem, temporary):
                self.filesystem.delete_file(temporary)
            raise


def _exists(filesystem: pafs.FileSystem, path: str) -> bool:
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def iter_landing_days(landing_uri: str, feed: str = "transactions") -> Iterator[date]:
    """The days that have a file in a feed, ascending."""
    filesystem, root = _open(landing_uri)
    selector = pafs.FileSelector(f"{root}/{feed}", allow_not_found=True)
    days = []
    for info in filesystem.get_file_info(selector):
        if info.type == pafs.FileType.Directory and info.base_name.startswith("date="):
            days.append(date.fromisoformat(info.base_name.removeprefix("date=")))
    yield from sorted(days)
