"""CLI commands of the streaming area (registered on import by cardscore.cli)."""

from __future__ import annotations
