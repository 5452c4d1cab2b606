"""A small world shared by the simulator tests (generated once: generation is pure)."""

from __future__ import annotations

import pytest

from cardscore.core.config.simulator import SimulatorSettings
from cardscore.simulator import World, generate_world

# Small but dense: r=15 gives every customer ~70 of 400 terminals, like the handbook's ~75.
SMALL = {"n_customers": 200, "n_terminals": 400, "n_days": 30, "radius": 15.0, "seed": 7}


def small_params(**changes: object) -> SimulatorSettings:
    return SimulatorSettings(**{**SMALL, **changes})


@pytest.fixture(scope="session")
def small_world() -> World:
    return generate_world(small_params())
