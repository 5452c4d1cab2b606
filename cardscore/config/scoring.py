"""Settings of the nightly batch scorer."""

from __future__ import annotations

from cardscore.config.base import Section


class ScoringSettings(Section):
    """Settings of the nightly batch scorer."""
