"""Settings of feature engineering and the feature store jobs.

The feature definitions themselves (windows, delay, names) are not settings: they are the
model's contract and live in `features/definitions.py`. Feast's locations and online store
are in the shared `feast` section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cardscore.core.config.base import Section


class FeaturesSettings(Section):
    """Settings of feature engineering and the feature store jobs."""

    backfill_chunk_days: int = Field(
        62,
        ge=1,
        le=400,
        description="a --from/--to range is computed this many snapshot days per pass "
        "(one read of the look-back, one gate and one commit per pass)",
    )
    require_labels: bool = Field(
        True,
        description="fail when the silver labels table does not exist; false treats it as "
        "empty (every terminal risk is then 0)",
    )
    require_previous_day: bool = Field(
        True,
        description="fail when silver transactions end before D-1 (the snapshot of D needs "
        "every transaction before D); false builds from whatever is there",
    )
    staging: str | None = Field(
        None,
        description="URI where a run stages its rows before the gate; default <lake>/_staging",
    )
    online_reader: Literal["snapshot", "direct", "feast"] = Field(
        "snapshot",
        description="how the stream scorer and the scoring API read online features: snapshot "
        "(the store's rows in memory, reloaded when a day is materialized), direct (one query per "
        "feature view per batch), feast (get_online_features; the slow reference)",
    )
    online_snapshot_check_seconds: float = Field(
        2.0, gt=0, description="snapshot reader: how often it checks whether the store changed"
    )
    online_snapshot_max_age_seconds: float = Field(
        3600.0,
        gt=0,
        description="snapshot reader: reload at least this often, even when no change was seen "
        "(Redis changes are seen through the registry's materializations only)",
    )
