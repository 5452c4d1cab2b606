"""Shared fixtures: one embedded Sail engine and one embedded broker for the whole run;
every test gets its own workspace (lake, MLflow, Feast folders) and its own topics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Quiet third-party progress bars and telemetry in test runs.
os.environ.setdefault("RUST_LOG", "warn")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
for _name in list(os.environ):
    if _name.startswith("CARDSCORE__") or _name in ("SPARK_REMOTE", "CARDSCORE_CONFIG"):
        del os.environ[_name]  # the developer's own environment must not leak into tests
# One XGBoost thread in tests: the suite shares 2 cores with the in-process engine and broker,
# and OpenMP threads waiting on a busy core made training 5-30x slower (measured: 100 rounds on
# 5,000 rows took 0.2 s with one thread, 9 s with two under load). Results are reproducible
# for a fixed thread count, so the tests' metrics stay deterministic.
os.environ["CARDSCORE__TRAINING__MODEL__N_JOBS"] = "1"

from cardscore.core.config import Settings, load_settings  # noqa: E402
from cardscore.services.broker import EmbeddedBroker, create_topics  # noqa: E402


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cardscore-session")


@pytest.fixture(scope="session")
def spark(session_home: Path):
    """The embedded Sail engine, started once for the run."""
    from cardscore.core.engine import get_spark, stop_spark

    session = get_spark(load_settings(overrides={"home": str(session_home)}))
    yield session
    stop_spark()


@pytest.fixture(scope="session")
def broker(session_home: Path) -> Iterator[EmbeddedBroker]:
    """The embedded Kafka-compatible broker, on a free port, for the run."""
    with EmbeddedBroker(log_file=session_home / "broker.log") as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose every local location is under this test's own folder."""
    return load_settings(overrides={"home": str(tmp_path / "home")})


@pytest.fixture
def kafka_settings(tmp_path: Path, broker: EmbeddedBroker) -> Settings:
    """Settings pointing at the session broker, with topic names unique to this test."""
    suffix = uuid.uuid4().hex[:8]
    return load_settings(
        overrides={
            "home": str(tmp_path / "home"),
            "kafka": {
                "mode": "external",
                "client": {"bootstrap.servers": broker.bootstrap},
                "partitions": 2,
                "topics": {
                    "transactions": f"tx-{suffix}",
                    "scores": f"scores-{suffix}",
                    "dlq": f"dlq-{suffix}",
                    "labels": f"labels-{suffix}",
                    "fresh_forwards": f"fresh-{suffix}",
                },
            },
        }
    )


@pytest.fixture
def lake(spark, settings: Settings):
    from cardscore.core.lake import Lake

    return Lake(spark, settings)


@pytest.fixture
def topic(broker: EmbeddedBroker) -> str:
    """A fresh two-partition topic for this test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_topics(broker.conf, {name: 2})
    return name


# The fast tier (`pytest -m "not engine"`) runs what needs no Spark engine, broker or other
# started service. A test is `engine` when it uses one of these fixtures (directly or through
# its own fixtures), is `classic`, or its module says so (`pytestmark = pytest.mark.engine`).
ENGINE_FIXTURES = frozenset({"spark", "broker", "lake", "kafka_settings", "topic"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("classic"):
            item.add_marker(pytest.mark.engine)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` runs on three workers with `--dist loadgroup`, grouped by test folder
    (tests/support/xdist_groups.py); other --dist modes are xdist's own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.support.xdist_groups import folder_scheduling

    return folder_scheduling(config, log)
