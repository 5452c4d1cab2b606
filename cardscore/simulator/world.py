"""`generate_world`: profiles, transactions, frauds and labels in memory (no I/O)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cardscore.core.config.simulator import SimulatorSettings
from cardscore.simulator.frauds import add_frauds
from cardscore.simulator.labels import label_events
from cardscore.simulator.profiles import (
    Reach,
    available_terminals,
    customer_profiles,
    terminal_profiles,
)
from cardscore.simulator.transactions import genuine_transactions

# Bump when a change makes the same parameters produce different data: the landing manifest
# records it, so a re-run over an older world is treated as a different world.
GENERATOR_VERSION = 1

# progress(phase, done, total). generate_world's phases: customers, terminals, reach,
# transactions, frauds, labels; write_landing's: transaction files, label files, reference, truth.
ProgressFn = Callable[[str, int, int], None]

# One independent random stream per step, keyed by name, so changing how one step draws does
# not shift the numbers of any other step.
_STREAMS = {"customers": 1, "terminals": 2, "transactions": 3, "frauds": 4, "labels": 5}


def rng_for(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream]])


@dataclass
class World:
    """A generated world.

    customers: customer_id, x, y, mean_amount, std_amount, mean_nb_tx_per_day
    terminals: terminal_id, x, y
    transactions: transaction_id, event_time (datetime64[us, UTC]), customer_id, terminal_id,
        amount, tx_time_seconds, tx_time_days, tx_fraud (0/1), tx_fraud_scenario (0-3);
        sorted by event_time, transaction_id 0..N-1 in that order
    labels: transaction_id, is_fraud, reported_time, fraud_scenario; sorted by reported_time
    compromised_terminals / compromised_customers: day, terminal_id / customer_id (analysis)
    """

    params: SimulatorSettings
    customers: pd.DataFrame
    terminals: pd.DataFrame
    reach: Reach
    transactions: pd.DataFrame
    labels: pd.DataFrame
    compromised_terminals: pd.DataFrame
    compromised_customers: pd.DataFrame
    generation_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def fraud_counts(self) -> dict[str, int]:
        """Frauds per scenario id ("1", "2", "3"), zero counts included."""
        counts = np.bincount(self.transactions["tx_fraud_scenario"].to_numpy(), minlength=4)
        return {str(s): int(counts[s]) for s in range(1, len(counts))}


def generate_world(
    params: SimulatorSettings | None = None, progress: ProgressFn | None = None
) -> World:
    """Generate the whole world for `params` (default: the handbook's); deterministic per seed."""
    params = params or SimulatorSettings()
    report = progress or _no_progress
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def step(name: str, make):  # times one phase and reports it done
        report(name, 0, 1)
        t0 = time.perf_counter()
        result = make()
        seconds[name] = time.perf_counter() - t0
        report(name, 1, 1)
        return result

    customers = step(
        "customers",
        lambda: customer_profiles(params.n_customers, rng_for(params.seed, "customers")),
    )
    terminals = step(
        "terminals",
        lambda: terminal_profiles(params.n_terminals, rng_for(params.seed, "terminals")),
    )
    reach = step("reach", lambda: available_terminals(customers, terminals, params.radius))
    genuine = step(
        "transactions",
        lambda: genuine_transactions(
            customers, reach, params.n_days, params.start_date, rng_for(params.seed, "transactions")
        ),
    )
    outcome = step(
        "frauds",
        lambda: add_frauds(
            genuine, params.n_customers, params.n_terminals, params, rng_for(params.seed, "frauds")
        ),
    )
    labels = step(
        "labels", lambda: label_events(outcome.transactions, params, rng_for(params.seed, "labels"))
    )
    return World(
        params=params,
        customers=customers,
        terminals=terminals,
        reach=reach,
        transactions=outcome.transactions,
        labels=labels,
        compromised_terminals=outcome.compromised_terminals,
        compromised_customers=outcome.compromised_customers,
        generation_seconds=time.perf_counter() - started,
        phase_seconds=seconds,
    )


def _no_progress(phase: str, done: int, total: int) -> None:
    return None
