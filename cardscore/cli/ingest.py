"""CLI commands of the ingest area (registered on import by cardscore.cli)."""

from __future__ import annotations
