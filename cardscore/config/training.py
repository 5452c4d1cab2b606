"""Settings of training, evaluation and the promotion gate."""

from __future__ import annotations

from cardscore.config.base import Section


class TrainingSettings(Section):
    """Settings of training, evaluation and the promotion gate."""
