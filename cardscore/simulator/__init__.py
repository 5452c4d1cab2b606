"""The transaction simulator of the Fraud Detection Handbook (chapter 3), vectorised.

    from cardscore.simulator import generate_world, write_landing, read_landing_day
    world = generate_world(settings.simulator)            # pure, in memory, seeded
    manifest = write_landing(world, settings.landing_root)  # JSON lines + Parquet, atomic
    lines = read_landing_day(settings.landing_root, date(2018, 4, 1))

Kafka replay lives in `cardscore.simulator.kafka` (imported on demand: it needs librdkafka).
"""

from cardscore.core.config.simulator import SimulatorSettings
from cardscore.simulator.landing import (
    LandingConflictError,
    check_landing,
    iter_landing_days,
    landing_file,
    read_landing_day,
    read_manifest,
    write_landing,
)
from cardscore.simulator.world import GENERATOR_VERSION, ProgressFn, World, generate_world

__all__ = [
    "GENERATOR_VERSION",
    "LandingConflictError",
    "ProgressFn",
    "SimulatorSettings",
    "World",
    "check_landing",
    "generate_world",
    "iter_landing_days",
    "landing_file",
    "read_landing_day",
    "read_manifest",
    "write_landing",
]
