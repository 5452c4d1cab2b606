"""Settings of the ingest stage (landing -> bronze -> silver)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cardscore.core.config.base import Section

# The same default as the Python validator (schemas.validation.DEFAULT_MAX_BYTES), written out
# so that config files and `config show` state it.
DEFAULT_MAX_LINE_BYTES = 64 * 1024


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
    data_docs: Literal["always", "on_failure"] = Field(
        "on_failure",
        description="rebuild the GX Data Docs site after every gate run, or only when a gate fails "
        "(a rebuild costs about as much as the validation itself)",
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
