"""The label feed: one fraud confirmation per fraudulent transaction, arriving with a delay.

Delays are whole seconds between `label_delay_min_hours` and `label_delay_max_days`. The
default shape is right-skewed, Beta(1.2, 3) scaled to that interval (with 1 h..7 d: mode
~16 h, median ~1.8 days, mean ~2 days, nothing after 7 days): cardholders report most
frauds within a day or two and chargebacks trail. With the maximum at 7 days the handbook's
protocol holds: every label of a transaction older than 7 days is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cardscore.core.config.simulator import SimulatorSettings
from cardscore.simulator.transactions import from_micros, to_micros

SKEW_SHAPE = (1.2, 3.0)
_MICROS = 1_000_000


def label_delays_seconds(n: int, params: SimulatorSettings, rng: np.random.Generator) -> np.ndarray:
    """`n` delays in whole seconds within [min, max] (both inclusive)."""
    low = round(params.label_delay_min_hours * 3600)
    high = round(params.label_delay_max_days * 86_400)
    if params.label_delay_distribution == "uniform":
        share = rng.random(n)
    else:
        share = rng.beta(*SKEW_SHAPE, size=n)
    return low + np.floor(share * (high - low)).astype(np.int64)


def label_events(
    transactions: pd.DataFrame, params: SimulatorSettings, rng: np.random.Generator
) -> pd.DataFrame:
    """transaction_id, is_fraud (True), reported_time, fraud_scenario; sorted by reported_time.

    `transactions` needs transaction_id, event_time, tx_fraud, tx_fraud_scenario.
    """
    frauds = transactions[transactions["tx_fraud"] == 1]
    delay = label_delays_seconds(len(frauds), params, rng)
    event_us = to_micros(frauds["event_time"])
    reported_us = event_us + delay * _MICROS
    ids = frauds["transaction_id"].to_numpy()
    order = np.lexsort((ids, reported_us))  # by reported time, then id: a total order
    return pd.DataFrame(
        {
            "transaction_id": ids[order],
            "is_fraud": np.ones(len(order), dtype=bool),
            "reported_time": from_micros(reported_us[order]),
            "fraud_scenario": frauds["tx_fraud_scenario"].to_numpy()[order].astype(np.int32),
        }
    )
