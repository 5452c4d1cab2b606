"""CLI commands of the monitoring area (registered on import by cardscore.cli)."""

from __future__ import annotations
