"""CLI commands of the scoring area (registered on import by cardscore.cli)."""

from __future__ import annotations
