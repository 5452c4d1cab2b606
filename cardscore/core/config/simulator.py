"""Settings of the transaction simulator (Fraud Detection Handbook, chapter 3).

The defaults reproduce the handbook's reference world: 5,000 customers, 10,000 terminals,
183 days from 2018-04-01, radius 5, and its three fraud scenarios.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from cardscore.core.config.base import Section


class SimulatorSettings(Section):
    """Settings of the transaction simulator. Every field is recorded in the landing manifest."""

    # ---- the world ----
    n_customers: int = Field(5000, ge=1, description="number of customers (cards)")
    n_terminals: int = Field(10000, ge=1, description="number of merchant terminals")
    n_days: int = Field(183, ge=1, description="number of simulated days")
    start_date: date = Field(date(2018, 4, 1), description="first simulated day (UTC)")
    radius: float = Field(
        5.0, gt=0, description="a customer uses the terminals closer than this (on a 100x100 grid)"
    )
    seed: int = Field(0, ge=0, description="random seed; the same seed gives identical output")

    # ---- fraud scenarios ----
    amount_threshold: float = Field(
        220.0, gt=0, description="scenario 1: every transaction above this amount is fraud"
    )
    compromised_terminals_per_day: int = Field(
        2, ge=0, description="scenario 2: terminals compromised each day (0 disables)"
    )
    terminal_compromise_days: int = Field(
        28,
        ge=1,
        description="scenario 2: days every transaction at a compromised terminal is fraud",
    )
    compromised_customers_per_day: int = Field(
        3, ge=0, description="scenario 3: customers whose credentials leak each day (0 disables)"
    )
    customer_compromise_days: int = Field(
        14, ge=1, description="scenario 3: days a leaked customer's transactions are at risk"
    )
    customer_fraud_one_in: int = Field(
        3,
        ge=1,
        description="scenario 3: one in N of the at-risk transactions become fraud (k = n // N)",
    )
    fraud_amount_multiplier: float = Field(
        5.0,
        gt=0,
        description="scenario 3: the fraudulent transactions' amounts are multiplied by this",
    )

    # ---- the label feed ----
    label_delay_min_hours: float = Field(
        1.0, ge=0, description="earliest a fraud label arrives after its transaction, in hours"
    )
    label_delay_max_days: float = Field(
        7.0,
        gt=0,
        description="latest a fraud label arrives, in days (7 keeps the handbook protocol: every "
        "label of a transaction older than 7 days is known)",
    )
    label_delay_distribution: Literal["skewed", "uniform"] = Field(
        "skewed",
        description="skewed: right-skewed Beta(1.2, 3) between min and max (most labels within "
        "two days, a tail to the max); uniform: uniform between min and max",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SimulatorSettings:
        if self.label_delay_min_hours > self.label_delay_max_days * 24:
            raise ValueError("label_delay_min_hours must not exceed label_delay_max_days * 24")
        if self.compromised_terminals_per_day > self.n_terminals:
            raise ValueError("compromised_terminals_per_day must not exceed n_terminals")
        if self.compromised_customers_per_day > self.n_customers:
            raise ValueError("compromised_customers_per_day must not exceed n_customers")
        return self
