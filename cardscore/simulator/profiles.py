"""Customer and terminal profiles, and which terminals each customer can reach.

Handbook chapter 3: customers and terminals sit uniformly on a 100 x 100 grid; a customer
pays at the terminals closer than the radius `r`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

GRID_SIZE = 100.0
MEAN_AMOUNT_RANGE = (5.0, 100.0)
MAX_MEAN_TX_PER_DAY = 4.0


def customer_profiles(n_customers: int, rng: np.random.Generator) -> pd.DataFrame:
    """customer_id, x, y, mean_amount, std_amount (= mean/2), mean_nb_tx_per_day ~ U(0, 4)."""
    x = rng.uniform(0.0, GRID_SIZE, n_customers)
    y = rng.uniform(0.0, GRID_SIZE, n_customers)
    mean_amount = rng.uniform(*MEAN_AMOUNT_RANGE, n_customers)
    mean_nb_tx_per_day = rng.uniform(0.0, MAX_MEAN_TX_PER_DAY, n_customers)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n_customers, dtype=np.int64),
            "x": x,
            "y": y,
            "mean_amount": mean_amount,
            "std_amount": mean_amount / 2.0,
            "mean_nb_tx_per_day": mean_nb_tx_per_day,
        }
    )


def terminal_profiles(n_terminals: int, rng: np.random.Generator) -> pd.DataFrame:
    """terminal_id, x, y uniform on the grid."""
    return pd.DataFrame(
        {
            "terminal_id": np.arange(n_terminals, dtype=np.int64),
            "x": rng.uniform(0.0, GRID_SIZE, n_terminals),
            "y": rng.uniform(0.0, GRID_SIZE, n_terminals),
        }
    )


@dataclass(frozen=True)
class Reach:
    """Each customer's available terminals in CSR form.

    The terminals of customer c are `terminal_ids[offsets[c]:offsets[c + 1]]`, sorted.
    """

    offsets: np.ndarray  # int64, n_customers + 1
    terminal_ids: np.ndarray  # int64

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of(self, customer_id: int) -> np.ndarray:
        return self.terminal_ids[self.offsets[customer_id] : self.offsets[customer_id + 1]]


def available_terminals(customers: pd.DataFrame, terminals: pd.DataFrame, radius: float) -> Reach:
    """Terminals at Euclidean distance strictly below `radius` of each customer (a k-d tree)."""
    customer_xy = customers[["x", "y"]].to_numpy()
    terminal_xy = terminals[["x", "y"]].to_numpy()
    tree = cKDTree(terminal_xy)
    # query_ball_point includes distance == r; the handbook's test is strict, so filter below.
    hits = tree.query_ball_point(customer_xy, r=radius, return_sorted=True)
    counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
    offsets = np.zeros(len(hits) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = (
        np.fromiter((t for h in hits for t in h), dtype=np.int64, count=int(offsets[-1]))
        if offsets[-1]
        else np.zeros(0, dtype=np.int64)
    )
    owner = np.repeat(np.arange(len(hits)), counts)
    distance = np.hypot(*(terminal_xy[flat] - customer_xy[owner]).T)
    strict = distance < radius
    if not strict.all():
        flat, owner = flat[strict], owner[strict]
        np.cumsum(np.bincount(owner, minlength=len(hits)), out=offsets[1:])
    return Reach(offsets=offsets, terminal_ids=terminals["terminal_id"].to_numpy()[flat])
