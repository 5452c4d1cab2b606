"""The handbook's three fraud scenarios, applied in order (a later one overwrites the id).

1. Every transaction above `amount_threshold` is fraud.
2. Each day d, `compromised_terminals_per_day` terminals are drawn; all their transactions
   in days [d, d + terminal_compromise_days) are fraud.
3. Each day d, `compromised_customers_per_day` customers are drawn; among their transactions
   in days [d, d + customer_compromise_days), k = n // customer_fraud_one_in drawn at random
   have their amount multiplied by `fraud_amount_multiplier` and are fraud. Applied day by
   day like the handbook, so a transaction drawn on two days is multiplied twice.

Like the handbook, days run over range(max transaction day): the last day draws nothing.
Customer and terminal ids are their row positions (0..n-1), as `profiles` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cardscore.core.config.simulator import SimulatorSettings

GENUINE, AMOUNT, TERMINAL, CUSTOMER = 0, 1, 2, 3


@dataclass(frozen=True)
class FraudOutcome:
    transactions: pd.DataFrame  # input columns, amount updated, plus tx_fraud, tx_fraud_scenario
    compromised_terminals: pd.DataFrame  # day, terminal_id
    compromised_customers: pd.DataFrame  # day, customer_id


def add_frauds(
    transactions: pd.DataFrame,
    n_customers: int,
    n_terminals: int,
    params: SimulatorSettings,
    rng: np.random.Generator,
) -> FraudOutcome:
    """Mark frauds on a copy of `transactions` (sorted by time, as `genuine_transactions` gives)."""
    amount = transactions["amount"].to_numpy(dtype=np.float64, copy=True)
    day = transactions["tx_time_days"].to_numpy()
    terminal = transactions["terminal_id"].to_numpy()
    customer = transactions["customer_id"].to_numpy()
    n_windows = int(day.max()) if day.size else 0

    scenario = np.where(amount > params.amount_threshold, AMOUNT, GENUINE).astype(np.int32)

    terminals_drawn = _draw_per_day(
        rng, n_terminals, params.compromised_terminals_per_day, n_windows
    )
    # compromised[t, k]: terminal t is compromised on day k (windows cut at the last day).
    compromised = np.zeros((n_terminals, n_windows + 1), dtype=bool)
    for d, drawn in enumerate(terminals_drawn):
        compromised[drawn, d : d + params.terminal_compromise_days] = True
    if day.size:
        scenario[compromised[terminal, day]] = TERMINAL

    customers_drawn = _draw_per_day(
        rng, n_customers, params.compromised_customers_per_day, n_windows
    )
    # Each customer's transactions, in time order, as contiguous slices of `by_customer`.
    by_customer = np.argsort(customer, kind="stable")
    starts = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(np.bincount(customer, minlength=n_customers), out=starts[1:])
    days_by_customer = day[by_customer]
    for d, drawn in enumerate(customers_drawn):
        at_risk = []
        for c in drawn.tolist():
            lo, hi = starts[c], starts[c + 1]
            segment = days_by_customer[lo:hi]
            first = lo + np.searchsorted(segment, d, side="left")
            last = lo + np.searchsorted(segment, d + params.customer_compromise_days, side="left")
            at_risk.append(by_customer[first:last])
        candidates = np.sort(np.concatenate(at_risk)) if at_risk else np.zeros(0, np.int64)
        k = candidates.size // params.customer_fraud_one_in
        if k == 0:
            continue
        chosen = rng.choice(candidates, size=k, replace=False)
        amount[chosen] = np.round(amount[chosen] * params.fraud_amount_multiplier, 2)
        scenario[chosen] = CUSTOMER

    out = transactions.copy()
    out["amount"] = amount
    out["tx_fraud"] = (scenario != GENUINE).astype(np.int32)
    out["tx_fraud_scenario"] = scenario
    return FraudOutcome(
        transactions=out,
        compromised_terminals=_drawn_frame(terminals_drawn, "terminal_id"),
        compromised_customers=_drawn_frame(customers_drawn, "customer_id"),
    )


def _draw_per_day(
    rng: np.random.Generator, population: int, per_day: int, n_days: int
) -> list[np.ndarray]:
    """Per day, `per_day` distinct ids out of `population` (the handbook's sample(n=...))."""
    return [np.sort(rng.choice(population, size=per_day, replace=False)) for _ in range(n_days)]


def _drawn_frame(drawn: list[np.ndarray], column: str) -> pd.DataFrame:
    days = np.repeat(np.arange(len(drawn), dtype=np.int64), [len(d) for d in drawn])
    ids = np.concatenate(drawn).astype(np.int64) if drawn else np.zeros(0, np.int64)
    return pd.DataFrame({"day": days, column: ids})
