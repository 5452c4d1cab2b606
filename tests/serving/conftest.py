"""Fixtures of the scoring-API tests: one world for the session (a Feast SQLite online store
with day DAY's rows and an MLflow registry whose model has a champion, the stream tests'
world), and the real app served by uvicorn on a free loopback port in a thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from cardscore.core.config import Settings, load_settings
from tests.streaming import world

# A model swap within a second; quick retries while a dependency is missing.
SERVING_TEST_SETTINGS: dict[str, Any] = {
    "model_poll_seconds": 0.2, "port": 0, "retry_initial_seconds": 0.1, "retry_max_seconds": 0.5,
}


@dataclass
class ServingWorld:
    home: Path
    customers: pd.DataFrame
    terminals: pd.DataFrame
    version: str

    def settings(self, **sections: Any) -> Settings:
        overrides: dict[str, Any] = {"home": str(self.home), "serving": dict(SERVING_TEST_SETTINGS)}
        for name, values in sections.items():
            overrides[name] = {**overrides.get(name, {}), **values}
        return load_settings(overrides=overrides)


@pytest.fixture(scope="session")
def serving_world(tmp_path_factory: pytest.TempPathFactory) -> ServingWorld:
    home = tmp_path_factory.mktemp("serving-world") / "home"
    settings = load_settings(overrides={"home": str(home)})
    customers, terminals = world.fill_online_store(settings)
    version = world.register(settings, world.booster(seed=0))
    return ServingWorld(home, customers, terminals, version)


class RunningApi:
    """`create_app(settings)` under uvicorn in a thread, on a socket bound to a free port."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from cardscore.serving.app import create_app
        from cardscore.serving.server import bind

        self.settings = settings
        self.app = create_app(settings)
        self.state = self.app.state.serving
        self.metrics = self.app.state.metrics
        self.socket = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, lifespan="on"))
        self.http = requests.Session()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> RunningApi:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self._thread.is_alive(), "the server thread died at start-up"
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.02)  # poll interval of the start-up condition
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self.socket.close()
        self.http.close()

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(f"{self.url}/readyz", timeout=10)
            if response.status_code == 200:
                return response.json()
            assert time.monotonic() < deadline, f"not ready in {timeout} s: {response.text}"
            time.sleep(0.05)  # poll interval of the readiness condition

    def post(self, body: Any, raw: bool = False) -> requests.Response:
        data = body if raw else json.dumps(body).encode()
        return self.http.post(f"{self.url}/v1/score", data=data, timeout=30,
                              headers={"content-type": "application/json"})

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.url}{path}", timeout=10)


@pytest.fixture
def serve() -> Iterator[Callable[[Settings], RunningApi]]:
    """Start APIs for a test; each is stopped at the end of the test."""
    running: list[RunningApi] = []

    def start(settings: Settings) -> RunningApi:
        api = RunningApi(settings).__enter__()
        running.append(api)
        return api

    yield start
    for api in running:
        api.__exit__(None, None, None)


def wire(record: dict[str, Any]) -> dict[str, Any]:
    """A test transaction record (epoch-micro time) as the contract's JSON object."""
    return json.loads(world.transaction_event_line(record))
