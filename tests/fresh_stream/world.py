"""The fresh-stream tests' world: a 40-day simulated world whose days before DAY are in the
lake (silver transactions and label reports), DAY in the landing files to be replayed."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pandas as pd
import pytest

from cardscore.core import catalog
from cardscore.core.config import Settings
from cardscore.core.lake import Lake
from cardscore.features.fresh import FRESH_FEATURE_NAMES, Entity
from cardscore.features.fresh_history import lake_history
from cardscore.features.fresh_state import FreshState
from cardscore.features.fresh_store import FreshEventsStore
from cardscore.features.store import apply, feature_store
from cardscore.schemas.contracts import SILVER_LABEL_REPORT, SILVER_TRANSACTION
from cardscore.services.broker import create_topics, project_topics
from cardscore.simulator.landing import write_landing
from cardscore.streaming.fresh_pipeline import FreshStepRunner, StepReport
from cardscore.streaming.fresh_steps import CardStep, TerminalStep
from tests.features.worlds import silver_labels, silver_transactions, small_world

START = date(2018, 4, 1)
DAY = START + timedelta(days=36)  # streamed; the lake holds the days before it


def us_of(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times, utc=True).dt.as_unit("us").astype("int64")


def build_streamed_world(spark, settings: Settings):
    """Landing files of a 40-day world, silver of the days before DAY, the topics, the applied repo."""
    world = small_world(seed=5, n_days=40)
    write_landing(world, settings.landing_root)
    tx = world.transactions
    before = tx[pd.to_datetime(tx["event_time"], utc=True).dt.date < DAY]
    labels = world.labels[pd.to_datetime(world.labels["reported_time"], utc=True).dt.date < DAY]
    lake = Lake(spark, settings)
    lake.overwrite(spark.createDataFrame(silver_transactions(before), SILVER_TRANSACTION.spark_schema()),
                   catalog.SILVER_TRANSACTIONS, partition_by=SILVER_TRANSACTION.partition_by)
    lake.overwrite(spark.createDataFrame(silver_labels(labels), SILVER_LABEL_REPORT.spark_schema()),
                   catalog.SILVER_LABEL_REPORTS, partition_by=SILVER_LABEL_REPORT.partition_by)
    create_topics(settings.kafka_conf(), project_topics(settings))
    apply(settings)
    return settings, world, lake


def run_until(runner: FreshStepRunner, done, timeout: float = 120.0) -> StepReport:
    """Run a step in a thread until `done(report)` holds after a batch (fails on timeout)."""
    def check(report: StepReport) -> None:
        if done(report):
            runner.stop()

    thread = threading.Thread(target=runner.run, kwargs={"on_batch": check}, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        runner.stop()
        thread.join(30)
        pytest.fail(f"the {runner.kind} step did not finish in {timeout} s: {runner.report.to_dict()}")
    return runner.report


def whole_state(world, lake_first: date) -> FreshState:
    """One state of every event the pipeline sees: the lake's look-back and the streamed day."""
    state = FreshState()
    tx = world.transactions.assign(us=us_of(world.transactions["event_time"]))
    tx = tx[(tx["event_time"].dt.date >= lake_first) & (tx["event_time"].dt.date <= DAY)].sort_values("us")
    labels = world.labels.assign(us=us_of(world.labels["reported_time"]))
    labels = labels[(labels["reported_time"].dt.date >= lake_first) & (labels["reported_time"].dt.date <= DAY)]
    events = [(r.us, 0, r) for r in tx.itertuples(index=False)] + [(r.us, 1, r) for r in labels.itertuples(index=False)]
    for us, kind, r in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            state.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, us, r.amount)
        else:
            state.add_label(r.transaction_id, bool(r.is_fraud), us)
    return state


def expected_values(simulated) -> pd.DataFrame:
    """DAY's transactions answered in time order by one state of the events before DAY and
    DAY's transactions (index: transaction id; columns: the fresh features)."""
    start_us = int(pd.Timestamp(DAY, tz="UTC").value // 1000)
    tx = simulated.transactions.assign(us=us_of(simulated.transactions["event_time"]))
    labels = simulated.labels.assign(us=us_of(simulated.labels["reported_time"]))
    labels = labels[labels["us"] < start_us]
    events = sorted([(r.us, 0, r) for r in tx[tx["us"] < start_us + 86_400_000_000].itertuples(index=False)]
                    + [(r.us, 1, r) for r in labels.itertuples(index=False)], key=lambda e: (e[0], e[1]))
    state, rows = FreshState(), {}
    for us, kind, r in events:
        if kind == 1:
            state.add_label(r.transaction_id, bool(r.is_fraud), us)
            continue
        if us >= start_us:
            rows[int(r.transaction_id)] = state.features_at(r.customer_id, r.terminal_id, us, r.amount)
        state.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, us, r.amount)
    return pd.DataFrame.from_dict(rows, orient="index")[list(FRESH_FEATURE_NAMES)]


def store_the_lake(settings, lake) -> dict[Entity, int]:
    """What the pipeline's start-up writes (`FreshStepRunner._bootstrap`, every partition):
    the lake's events of each card and terminal. Returns each step's clock (the as-of)."""
    store = FreshEventsStore(feature_store(settings))
    clocks = {}
    for entity, step in ((Entity.CARD, CardStep()), (Entity.TERMINAL, TerminalStep())):
        for kind, record in lake_history(lake, entity)(lambda _key: True):
            step.load(kind, record)
        assert store.write(step.exports()) > 20
        clocks[entity] = step.clock_us
    return clocks
