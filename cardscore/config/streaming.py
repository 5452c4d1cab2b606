"""Settings of the Kafka stream scorer."""

from __future__ import annotations

from cardscore.config.base import Section


class StreamingSettings(Section):
    """Settings of the Kafka stream scorer."""
