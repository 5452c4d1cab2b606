"""CLI commands of the simulate area (registered on import by cardscore.cli)."""

from __future__ import annotations
