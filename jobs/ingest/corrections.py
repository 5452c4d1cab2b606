"""Corrections of delivered landing files: supersede and retract, with who, why and when.

    cardscore landing supersede --date D --file F --reason "..."   F replaces the day's earlier files of its feed
    cardscore landing retract   --date D --file F --reason "..."   F is withdrawn
    cardscore landing status    --date D                             the day's files and what became of them

Landing files are immutable and nothing is deleted from landing or bronze: a correction is a
row per withdrawn file in `ops.landing_corrections` (action, feed, day, the file, the file that
replaced it, reason, actor, time). The next ingest of the day (`cardscore nightly --date D`
re-runs it, since the table is one of its declared inputs) rebuilds the day's silver rows from
the surviving files only: duplicates and conflicts are judged among them, a withdrawn file's
lines stay in bronze and its quarantined lines stay in quarantine as history, and labels a
withdrawn file had published give way to the latest surviving report of the transaction
(jobs/ingest/stage.py). A file is withdrawn once: recording the same correction again adds
nothing, so the commands are safe to re-run.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from cardscore.core import catalog
from cardscore.core.errors import StageFailed
from cardscore.core.logs import get_logger
from cardscore.jobs.ingest.landing import LandingFile, list_landing_files
from cardscore.jobs.ingest.transforms import FEEDS

if TYPE_CHECKING:
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext

log = get_logger("jobs.ingest.corrections")

SUPERSEDE, RETRACT = "supersede", "retract"
CORRECTIONS_SCHEMA = (
    "correction_id string, action string, feed string, landing_date date, source_file string, "
    "replaced_by string, reason string, actor string, recorded_at timestamp"
)


class CorrectionError(StageFailed):
    """A correction that cannot be recorded (unknown file, nothing to supersede); exit code 1."""

    def __init__(self, message: str) -> None:
        super().__init__("landing", message)


@dataclass(frozen=True)
class Withdrawal:
    """A landing file taken out of its day: superseded by another file, or retracted."""

    action: str
    feed: str
    landing_date: date
    source_file: str
    replaced_by: str | None
    reason: str
    actor: str
    recorded_at: datetime
    correction_id: str

    def describe(self) -> str:
        what = f"superseded by {_name(self.replaced_by)}" if self.action == SUPERSEDE else "retracted"
        return f"{what} by {self.actor} at {self.recorded_at:%Y-%m-%d %H:%M:%S} UTC: {self.reason}"


@dataclass
class CorrectionResult:
    """What a supersede or retract recorded: the files it withdrew now, and those already withdrawn."""

    action: str
    day: date
    feed: str
    file: str  # the file named on the command line
    correction_id: str
    withdrawn: list[str] = field(default_factory=list)
    already: list[Withdrawal] = field(default_factory=list)

    def message(self) -> str:
        if not self.withdrawn:
            return f"nothing to record: {', '.join(_name(w.source_file) + ' is already ' + w.describe() for w in self.already)}"
        names = ", ".join(_name(uri) for uri in self.withdrawn)
        verb = f"superseded by {_name(self.file)}" if self.action == SUPERSEDE else "retracted"
        return (f"{self.feed} {self.day}: {names} {verb}; run `cardscore nightly --date {self.day}` "
                "to rebuild the day and everything downstream")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out


def default_actor() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


# --------------------------------------------------------------------------- reads


def withdrawals(lake: Lake, day: date | None = None, feed: str | None = None) -> dict[str, Withdrawal]:
    """source_file -> its withdrawal (the first one recorded), for a day and feed or all of them."""
    if not lake.exists(catalog.LANDING_CORRECTIONS):
        return {}
    frame = lake.read(catalog.LANDING_CORRECTIONS)
    if day is not None:
        frame = frame.where(f"landing_date = DATE'{day.isoformat()}'")
    if feed is not None:
        frame = frame.where(frame.feed == feed)
    found: dict[str, Withdrawal] = {}
    for row in sorted(frame.collect(), key=lambda r: (r.recorded_at, r.correction_id)):
        found.setdefault(row.source_file, Withdrawal(**row.asDict()))
    return found


def day_fingerprint(ctx: JobContext, day: date) -> dict[str, str]:
    """The landing day's files (feed, name, size), as one short hash: ingest's `observe`, so a
    file delivered after the day was ingested makes the nightly ingest the day again."""
    import hashlib

    settings = ctx.settings
    listed = [f for feed in FEEDS for f in (list_landing_files(settings.landing_root, feed, day, settings.ingest.file_suffix) or [])]
    text = "\n".join(f"{f.feed} {f.uri} {f.size}" for f in listed)
    return {f"landing {day.isoformat()}": hashlib.sha256(text.encode()).hexdigest()[:16]}


def find_file(ctx: JobContext, day: date, name: str, feed: str | None = None) -> LandingFile:
    """The day's landing file called `name` (a file name, a path or a URI ending in it)."""
    settings = ctx.settings
    wanted = name.rstrip("/").rsplit("/", 1)[-1]
    feeds = [feed] if feed else list(FEEDS)
    unknown = [f for f in feeds if f not in FEEDS]
    if unknown:
        raise CorrectionError(f"unknown feed {unknown[0]!r}; feeds are {', '.join(FEEDS)}")
    found = [
        f for name_ in feeds
        for f in (list_landing_files(settings.landing_root, name_, day, settings.ingest.file_suffix) or [])
        if _name(f.uri) == wanted or f.path.endswith("/" + wanted)
    ]
    if not found:
        listed = [_name(f.uri) for name_ in feeds
                  for f in (list_landing_files(settings.landing_root, name_, day, settings.ingest.file_suffix) or [])]
        raise CorrectionError(
            f"no landing file {wanted!r} for {day} under {settings.landing_root} "
            f"({'files of the day: ' + ', '.join(listed) if listed else 'the day has no files'}); "
            "deliver the corrected file into the day's folder first"
        )
    if len(found) > 1:
        raise CorrectionError(f"{wanted!r} is a file of several feeds on {day}; name one with --feed")
    return found[0]


# --------------------------------------------------------------------------- writes


def supersede(ctx: JobContext, day: date, name: str, reason: str, actor: str | None = None,
              feed: str | None = None) -> CorrectionResult:
    """Record that landing file `name` replaces every other file of its feed on `day` (those
    delivered before it, still in effect)."""
    file = find_file(ctx, day, name, feed)
    current = withdrawals(ctx.lake, day, file.feed)
    if file.uri in current:
        raise CorrectionError(f"{_name(file.uri)} is itself {current[file.uri].describe()}; it cannot supersede")
    others = [f for f in list_landing_files(ctx.settings.landing_root, file.feed, day, ctx.settings.ingest.file_suffix) or []
              if f.uri != file.uri]
    if not others:
        raise CorrectionError(f"{_name(file.uri)} is the only {file.feed} file of {day}: there is nothing to supersede")
    return _record(ctx, SUPERSEDE, day, file, [f.uri for f in others], current, reason, actor)


def retract(ctx: JobContext, day: date, name: str, reason: str, actor: str | None = None,
            feed: str | None = None) -> CorrectionResult:
    """Record that landing file `name` is withdrawn: its lines no longer count for `day`."""
    file = find_file(ctx, day, name, feed)
    return _record(ctx, RETRACT, day, file, [file.uri], withdrawals(ctx.lake, day, file.feed), reason, actor)


def _record(ctx: JobContext, action: str, day: date, file: LandingFile, targets: list[str],
            current: dict[str, Withdrawal], reason: str, actor: str | None) -> CorrectionResult:
    if not reason or not reason.strip():
        raise CorrectionError("a correction needs a --reason (it is kept with the withdrawn files)")
    actor = actor or default_actor()
    result = CorrectionResult(action, day, file.feed, file.uri, f"{action}-{uuid.uuid4().hex[:12]}")
    result.already = [current[uri] for uri in targets if uri in current]
    result.withdrawn = [uri for uri in targets if uri not in current]
    if result.withdrawn:
        now = datetime.now(UTC)
        replaced_by = file.uri if action == SUPERSEDE else None
        rows = [(result.correction_id, action, file.feed, day, uri, replaced_by, reason.strip(), actor, now)
                for uri in result.withdrawn]
        # Partitioned by day: the runner then sees which days a correction touched (ingest's input).
        ctx.lake.append(ctx.spark.createDataFrame(rows, CORRECTIONS_SCHEMA), catalog.LANDING_CORRECTIONS,
                        partition_by=["landing_date"])
    log.info("landing.correction", action=action, day=day.isoformat(), feed=file.feed, file=_name(file.uri),
             withdrawn=[_name(u) for u in result.withdrawn], already=[_name(w.source_file) for w in result.already],
             actor=actor, reason=reason.strip(), correction_id=result.correction_id)
    return result


def _name(uri: str | None) -> str:
    from urllib.parse import unquote

    return unquote((uri or "").rsplit("/", 1)[-1])


# --------------------------------------------------------------------------- status


@dataclass
class FileStatus:
    """A landing file of the day: whether it is in effect, what ingest made of its lines."""

    feed: str
    name: str
    uri: str
    size_bytes: int
    state: str  # in effect | superseded | retracted | not loaded yet
    lines: int | None = None  # from the load log, once loaded
    load_id: str | None = None
    loaded_at: datetime | None = None
    in_silver: int = 0  # its rows in silver now
    quarantined: dict[str, int] = field(default_factory=dict)  # reason -> lines
    withdrawal: Withdrawal | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def day_status(ctx: JobContext, day: date) -> list[FileStatus]:
    """Every landing file of `day` (both feeds) with its state, load, silver rows and quarantined
    lines by reason: what an operator reads before and after a correction."""
    from pyspark.sql import functions as F

    lake, settings = ctx.lake, ctx.settings
    files = [f for feed in FEEDS for f in (list_landing_files(settings.landing_root, feed, day, settings.ingest.file_suffix) or [])]
    withdrawn = withdrawals(lake, day)
    uris = [f.uri for f in files]
    loads: dict[str, Any] = {}
    if uris and lake.exists(catalog.INGEST_LOADS):
        loads = {r.source_file: r for r in lake.read(catalog.INGEST_LOADS).where(F.col("source_file").isin(uris)).collect()}
    quarantined: dict[str, dict[str, int]] = {}
    if uris and lake.exists(catalog.QUARANTINE):
        rows = (lake.read(catalog.QUARANTINE).where((F.col("landing_date") == F.lit(day.isoformat()).cast("date"))
                                                   & F.col("source_file").isin(uris))
                .groupBy("source_file", "reason").count().collect())
        for r in rows:
            quarantined.setdefault(r.source_file, {})[r.reason] = r["count"]
    in_silver: dict[str, int] = {}
    for feed in FEEDS.values():
        if uris and lake.exists(feed.silver_table):
            silver = lake.read(feed.silver_table).where(F.col("source_file").isin(uris))
            for r in silver.groupBy("source_file").count().collect():
                in_silver[r.source_file] = r["count"]
    out = []
    for f in files:
        load, withdrawal = loads.get(f.uri), withdrawn.get(f.uri)
        state = ("superseded" if withdrawal.action == SUPERSEDE else "retracted") if withdrawal else (
            "in effect" if load is not None else "not loaded yet")
        out.append(FileStatus(
            feed=f.feed, name=_name(f.uri), uri=f.uri, size_bytes=f.size, state=state,
            lines=None if load is None else load.line_count, load_id=None if load is None else load.load_id,
            loaded_at=None if load is None else load.ingested_at, in_silver=in_silver.get(f.uri, 0),
            quarantined=dict(sorted(quarantined.get(f.uri, {}).items())), withdrawal=withdrawal,
        ))
    return out
