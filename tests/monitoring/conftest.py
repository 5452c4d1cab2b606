"""The monitoring tests' world, built once for the session: real Delta, Feast, MLflow, scorer.

A simulated 50-day world (2018-04-01..05-20; old enough that every 30-day window is full, so
its days are stationary), its silver tables and the gold snapshots of 05-01..05-13, 05-19 and 05-20 built by
the real features job; a model trained by the real training job (which saves the reference
profile of its test days 05-08..05-11) and promoted to champion; the days 05-13, 05-19 and
05-20 scored by the real batch scorer. Monitoring day 05-20 then has drift against the
reference, a scored day whose labels have just become complete (05-13, 7 days before), and a
day in between whose labels are not (05-19).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from cardscore.core.config import Settings, load_settings

FIRST_SNAPSHOT = date(2018, 5, 1)
LAST_DAY = date(2018, 5, 20)
JUDGED_DAY = date(2018, 5, 13)  # LAST_DAY - 7: its labels become complete on LAST_DAY
SCORED_DAYS = [JUDGED_DAY, date(2018, 5, 19), LAST_DAY]
PROTOCOL = {"train_start": "2018-05-01", "train_days": 4, "delay_days": 3, "test_days": 4, "top_k": 20}
GATE = {"min_auc_roc": 0.5, "min_average_precision": 0.01, "min_card_precision_at_k": 0.0,
        "tolerance_auc_roc": 1.0, "tolerance_average_precision": 1.0, "tolerance_card_precision_at_k": 1.0}


def world_overrides(home: Path, **more: object) -> dict:
    return {
        "home": str(home),
        "training": {"protocol": PROTOCOL, "gate": GATE, "model": {"n_estimators": 40, "max_depth": 4}},
        "monitoring": more.pop("monitoring", {}),
        **more,
    }


@dataclass
class MonitoringWorld:
    home: Path
    settings: Settings
    transactions: pd.DataFrame  # simulator output (with tx_fraud, tx_fraud_scenario)
    labels: pd.DataFrame
    version: str  # the champion


@pytest.fixture(scope="session")
def monitoring_world(spark, tmp_path_factory: pytest.TempPathFactory) -> MonitoringWorld:
    from cardscore.core import registry
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.core.lake import Lake
    from cardscore.core.stage import job_context
    from cardscore.features.store import apply
    from cardscore.jobs.build_features.stage import build_features_range
    from cardscore.jobs.score_batch.stage import score_days
    from cardscore.jobs.train.stage import TrainingParams, train
    from cardscore.simulator import generate_world
    from tests.features.worlds import write_silver

    home = tmp_path_factory.mktemp("monitoring-world") / "home"
    settings = load_settings(overrides=world_overrides(home))
    world = generate_world(SimulatorSettings(
        n_customers=150, n_terminals=300, n_days=50, radius=10.0, seed=21,
        compromised_terminals_per_day=1, compromised_customers_per_day=1,
    ))
    lake = Lake(spark, settings)
    write_silver(lake, world.transactions, world.labels)
    ctx = job_context(settings, spark)
    # The snapshots the training protocol, the retraining window and the scored days read.
    build_features_range(ctx, FIRST_SNAPSHOT, JUDGED_DAY)
    build_features_range(ctx, SCORED_DAYS[1], LAST_DAY)
    apply(settings)
    report = train(ctx, TrainingParams(actor="tests", reason="monitoring world"))
    registry.promote(settings, actor="tests", reason="monitoring world", version=report.version)
    score_days(ctx, SCORED_DAYS)
    return MonitoringWorld(home, settings, world.transactions, world.labels, str(report.version))


def job_for(spark, world: MonitoringWorld, **overrides: object):
    """A job context on the world's home with settings overrides (e.g. another table)."""
    from cardscore.core.stage import job_context

    settings = load_settings(overrides=world_overrides(world.home, **overrides))
    return job_context(settings, spark)


@pytest.fixture
def webhook_server():
    """A tiny local HTTP server thread: yields (url, received), received = [(json body, headers)]."""
    received: list[tuple[dict, dict]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((json.loads(body), dict(self.headers)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/secret-token", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
