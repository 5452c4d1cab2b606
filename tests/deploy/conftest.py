"""Fixtures of the deployment tests: one small nightly world in two homes for the run (the
Airflow DAG runs the night in one, `cardscore nightly` in the other, and the nightly's metrics
file feeds the dashboard and rules checks), and the stream-scorer fixtures of tests/streaming."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.deploy import nightly_world
from tests.streaming.conftest import stream_world  # noqa: F401 (a fixture of the scrape test)


@dataclass
class NightlyTwins:
    by_nightly: nightly_world.Twin  # where `cardscore nightly` ran the night
    for_airflow: nightly_world.Twin  # the same world before the night, for the Airflow DAG


@pytest.fixture(scope="session")
def nightly_twins(spark, tmp_path_factory: pytest.TempPathFactory) -> NightlyTwins:
    from cardscore.core.runner import execute
    from cardscore.core.stage import job_context
    from cardscore.jobs.nightly.pipeline import NIGHTLY

    first, second = nightly_world.prepare(spark, tmp_path_factory.mktemp("twins"))
    results = execute(NIGHTLY, job_context(first.settings, spark), [nightly_world.NIGHT])
    assert not results[0].failed, results[0].failed
    return NightlyTwins(first, second)
