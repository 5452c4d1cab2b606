"""Settings of the transaction simulator."""

from __future__ import annotations

from cardscore.config.base import Section


class SimulatorSettings(Section):
    """Settings of the transaction simulator."""
