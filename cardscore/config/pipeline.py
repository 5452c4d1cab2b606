"""Settings of the nightly pipeline orchestration."""

from __future__ import annotations

from cardscore.config.base import Section


class PipelineSettings(Section):
    """Settings of the nightly pipeline orchestration."""
