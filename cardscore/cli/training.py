"""CLI commands of the training area (registered on import by cardscore.cli)."""

from __future__ import annotations
