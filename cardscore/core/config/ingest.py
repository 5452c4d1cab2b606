"""Settings of the ingest stage (landing -> bronze -> silver)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cardscore.core.config.base import Section

# The same default as the Python validator (schemas.validation.DEFAULT_MAX_BYTES), written out
# so that config files and `config show` state it.
DEFAULT_MAX_LINE_BYTES = 64 * 1024


class VolumeCheck(Section):
    """The accepted rows of a day against the median of the recent days already in silver."""

    feeds: list[Literal["transactions", "labels"]] = Field(
        default_factory=lambda: ["transactions"],
        description="feeds whose accepted row count is checked (label volumes vary too much day to day)",
    )
    lookback_days: int = Field(7, ge=1, description="the recent days whose median is the reference")
    min_days: int = Field(3, ge=1, description="fewer recent days in silver than this: no volume check yet")
    min_ratio: float = Field(0.5, ge=0, description="fewest accepted rows, as a share of the median")
    max_ratio: float | None = Field(2.0, ge=0, description="most accepted rows, as a multiple of the median (null: no upper bound)")


class IngestGateSettings(Section):
    """Run-time values of the silver gates (expectations/suites/silver_*.json).

    Amount bounds default to the contract's (schemas.contracts.TRANSACTION_EVENT); set them
    here only to make a gate stricter than the contract, e.g. to stop a day whose amounts are
    valid but implausible.
    """

    amount_min: float | None = Field(None, description="lowest amount (default: the contract's minimum)")
    amount_max: float | None = Field(None, description="highest amount (default: the contract's maximum)")
    mean_amount_min: float = Field(1.0, description="lowest plausible mean amount of a day")
    mean_amount_max: float = Field(10_000.0, description="highest plausible mean amount of a day")
    max_quarantine_rate: float = Field(
        0.05, ge=0, le=1,
        description="highest share of a day's lines quarantined for any one reason (e.g. encoding)",
    )
    max_quarantine_rate_by_reason: dict[str, float] = Field(
        default_factory=dict,
        description="per reason code, overrides max_quarantine_rate (e.g. duplicate_conflict: 0.01)",
    )
    max_rejected_rate: float = Field(0.10, ge=0, le=1, description="highest share of a day's lines quarantined, all reasons together")
    min_day_lines: dict[str, int] = Field(
        default_factory=lambda: {"transactions": 1, "labels": 0},
        description="fewest lines a feed's surviving files must have for the day (0: an empty or missing "
        "file is fine; the world's first day has no labels)",
    )
    volume: VolumeCheck = Field(default_factory=VolumeCheck)
    data_docs: Literal["always", "on_failure"] = Field(
        "on_failure",
        description="rebuild the GX Data Docs site after every gate run, or only when a gate fails "
        "(a rebuild costs about as much as the validation itself)",
    )


class DayWindow(Section):
    """The days ingest accepts around the pipeline's clock; others are quarantined as outside_window.

    A landing day outside the window is refused (nothing published, exit code 1); a record whose
    day is outside it is quarantined. The clock is `pipeline.clock`, or the system clock.
    """

    max_days_ahead: int | None = Field(
        1, ge=0, description="latest accepted day, in days after the clock's day (null: no limit)"
    )
    max_days_behind: int | None = Field(
        None, ge=0, description="earliest accepted day, in days before the clock's day (null: no limit, for backfills)"
    )


class IngestSettings(Section):
    """Settings of the ingest stage (landing -> bronze -> silver)."""

    max_line_bytes: int = Field(
        DEFAULT_MAX_LINE_BYTES,
        ge=64,
        description="longer landing lines are quarantined as `oversized` (stream messages use the same limit)",
    )
    quarantine_raw_max_chars: int = Field(
        4096,
        ge=0,
        description="quarantine keeps at most this many characters of a rejected line (raw_truncated says when cut)",
    )
    validator: Literal["sql", "python"] = Field(
        "sql",
        description="sql: contract checks in Spark SQL, with the Python validator only for lines outside "
        "the plain flat-JSON shape; python: the Python validator (a UDF) for every line. Both give the "
        "same decisions; sql is faster (bench/ingest.py)",
    )
    file_suffix: str = Field(".jsonl", description="landing files of a day are the files with this suffix")
    gate: IngestGateSettings = Field(default_factory=IngestGateSettings)
    day_window: DayWindow = Field(default_factory=DayWindow)
