"""CLI commands of the features area (registered on import by cardscore.cli)."""

from __future__ import annotations
