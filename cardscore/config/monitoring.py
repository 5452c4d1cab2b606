"""Settings of monitoring, alerts and the retraining trigger."""

from __future__ import annotations

from cardscore.config.base import Section


class MonitoringSettings(Section):
    """Settings of monitoring, alerts and the retraining trigger."""
