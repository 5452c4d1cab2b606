"""Settings of the ingest stage (landing -> bronze -> silver)."""

from __future__ import annotations

from cardscore.config.base import Section


class IngestSettings(Section):
    """Settings of the ingest stage (landing -> bronze -> silver)."""
