"""CLI commands of the pipeline area (registered on import by cardscore.cli)."""

from __future__ import annotations
