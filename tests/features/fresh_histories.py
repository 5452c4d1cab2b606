"""Seeded random histories for the fresh-feature oracle tests (hypothesis is not a declared dev
dependency, so plain seeded numpy: every failure names its seed).

They are made to hit the edges of the semantics: few cards and terminals (shared terminals,
busy windows), times on a coarse grid (many ties at equal microseconds, events exactly W before
another), amounts with two decimals, unrounded, zero, 100,000 and halfway cases of the
micro-unit rounding; fraud reports before (invalid), at, and after their transaction, exactly a
window length later, at another transaction's exact time, repeated, genuine (is_fraud false),
and for unknown transaction ids; genuine verdicts on reported frauds (retractions) later, at
the same time, before, exactly a window length later, and reported fraud again after them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MINUTE = 60 * 1_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
BASE_US = 1_525_132_800_000_000  # 2018-05-01 00:00:00 UTC
WINDOW_LENGTHS = (10 * MINUTE, HOUR, DAY, 7 * DAY, 28 * DAY, 30 * DAY)


@dataclass
class History:
    seed: int
    transactions: pd.DataFrame  # transaction_id, customer_id, terminal_id, amount, us
    labels: pd.DataFrame  # transaction_id, is_fraud, reported_us


def random_history(seed: int, n_tx: int = 250, key_offset: int = 0) -> History:
    rng = np.random.default_rng(seed)
    step, span = [(1, 5_000), (MINUTE, 6 * 60), (10 * MINUTE, 3 * 144), (HOUR, 40 * 24)][seed % 4]
    us = BASE_US + rng.integers(0, span, n_tx) * step
    cards = rng.integers(0, int(rng.integers(2, 6)), n_tx) + key_offset
    terminals = rng.integers(0, int(rng.integers(2, 6)), n_tx) + key_offset
    # Force ties: some transactions at the exact time of another of the same card.
    for i in rng.choice(n_tx, n_tx // 8, replace=False):
        same = np.flatnonzero(cards == cards[i])
        us[i] = us[rng.choice(same)]
    kind = rng.integers(0, 5, n_tx)
    amounts = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [
            np.round(rng.gamma(2.0, 40.0, n_tx), 2),
            rng.uniform(0, 100_000, n_tx),
            np.zeros(n_tx),
            rng.integers(0, 10**6, n_tx) / 1e6 + 5e-7,  # halfway (in decimal) between micro-units
        ],
        np.full(n_tx, 100_000.0),
    )
    ids = rng.permutation(n_tx * 3)[:n_tx].astype(np.int64) + key_offset * 10
    transactions = pd.DataFrame(
        {"transaction_id": ids, "customer_id": cards, "terminal_id": terminals, "amount": amounts, "us": us}
    )
    return History(seed, transactions, _labels(rng, transactions, key_offset))


def _labels(rng: np.random.Generator, tx: pd.DataFrame, key_offset: int) -> pd.DataFrame:
    n = len(tx)
    frauds = tx.iloc[rng.choice(n, max(1, n // 3), replace=False)]
    e = frauds["us"].to_numpy()
    m = len(frauds)
    kind = rng.integers(0, 5, m)
    delay = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [
            np.zeros(m, dtype=np.int64),  # reported at its own transaction time
            -rng.integers(1, DAY, m),  # before its transaction: invalid
            rng.choice(WINDOW_LENGTHS, m),  # exactly a window length later
            tx["us"].to_numpy()[rng.integers(0, n, m)] - e,  # at another transaction's time
        ],
        rng.integers(HOUR, 8 * DAY, m),  # the simulator's range (and a bit more)
    )
    reports = pd.DataFrame({"transaction_id": frauds["transaction_id"].to_numpy(), "is_fraud": True, "reported_us": e + delay})
    again = reports.sample(frac=0.3, random_state=int(rng.integers(1 << 31)))
    again = again.assign(reported_us=again["reported_us"] + rng.integers(-DAY, DAY, len(again)))
    genuine = tx.sample(frac=0.1, random_state=int(rng.integers(1 << 31)))
    genuine = pd.DataFrame({"transaction_id": genuine["transaction_id"].to_numpy(), "is_fraud": False, "reported_us": genuine["us"].to_numpy() - 1})
    unknown = pd.DataFrame({"transaction_id": np.arange(5) + 10**9 + key_offset, "is_fraud": True, "reported_us": BASE_US + np.arange(5) * HOUR})
    labels = pd.concat([reports, again, genuine, unknown, _retractions(rng, tx, reports)], ignore_index=True)
    return labels.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)


def _retractions(rng: np.random.Generator, tx: pd.DataFrame, reports: pd.DataFrame) -> pd.DataFrame:
    """Genuine verdicts on reported frauds: later (a retraction; some exactly a window length
    later, some at another transaction's time, some then reported fraud again), at the very
    time of the fraud report (the fraud wins), and before it (changes nothing)."""
    picked = reports.sample(frac=0.5, random_state=int(rng.integers(1 << 31)))
    r = picked["reported_us"].to_numpy()
    m = len(picked)
    kind = rng.integers(0, 5, m)
    when = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [r, r - rng.integers(1, DAY, m), r + rng.choice(WINDOW_LENGTHS, m), tx["us"].to_numpy()[rng.integers(0, len(tx), m)]],
        r + rng.integers(1, 3 * DAY, m),
    )
    genuine = pd.DataFrame({"transaction_id": picked["transaction_id"].to_numpy(), "is_fraud": False, "reported_us": when})
    again = genuine.sample(frac=0.3, random_state=int(rng.integers(1 << 31)))
    again = again.assign(is_fraud=True, reported_us=again["reported_us"] + rng.integers(0, 2 * DAY, len(again)))
    return pd.concat([genuine, again], ignore_index=True)
