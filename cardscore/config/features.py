"""Settings of feature engineering and the feature store jobs."""

from __future__ import annotations

from cardscore.config.base import Section


class FeaturesSettings(Section):
    """Settings of feature engineering and the feature store jobs."""
