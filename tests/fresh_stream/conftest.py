from __future__ import annotations

import pytest

from cardscore.core.config import Settings
from tests.fresh_stream.world import build_streamed_world


@pytest.fixture
def streamed_world(spark, kafka_settings: Settings):
    """Landing files of a 40-day world, silver of the days before DAY, the topics, the applied repo."""
    return build_streamed_world(spark, kafka_settings)
