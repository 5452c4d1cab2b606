"""`cardscore demo`: the whole pipeline on embedded defaults (grows as stages land)."""

from __future__ import annotations
