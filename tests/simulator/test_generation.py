"""generate_world: determinism, the three fraud scenarios, labels and the world's statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from cardscore.core.config.simulator import SimulatorSettings
from cardscore.simulator import World, generate_world
from cardscore.simulator.transactions import SECONDS_PER_DAY, genuine_transactions, to_micros
from cardscore.simulator.world import rng_for

from .conftest import small_params

HOUR_US = 3_600 * 1_000_000
DAY_US = 24 * HOUR_US


def _genuine(world: World) -> pd.DataFrame:
    """The world's transactions before any fraud (the same random stream, replayed)."""
    p = world.params
    return genuine_transactions(
        world.customers, world.reach, p.n_days, p.start_date, rng_for(p.seed, "transactions")
    )


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames(small_world: World) -> None:
    again = generate_world(small_params())
    for name in ("customers", "terminals", "transactions", "labels", "compromised_terminals"):
        pd.testing.assert_frame_equal(
            getattr(small_world, name), getattr(again, name), check_exact=True
        )


def test_different_seed_gives_a_different_world(small_world: World) -> None:
    other = generate_world(small_params(seed=8))
    assert not np.allclose(other.customers["x"], small_world.customers["x"])
    assert not other.transactions.equals(small_world.transactions)
    assert not other.compromised_terminals.equals(small_world.compromised_terminals)


def test_transactions_sorted_with_sequential_ids(small_world: World) -> None:
    tx = small_world.transactions
    assert len(tx) > 5_000
    assert tx["transaction_id"].tolist() == list(range(len(tx)))
    assert tx["event_time"].is_monotonic_increasing
    assert str(tx["event_time"].dtype) == "datetime64[us, UTC]"
    # event_time = start + day * 86400 + time of day, and the time of day is strictly inside the day
    start = pd.Timestamp(small_world.params.start_date, tz="UTC")
    offset = (tx["event_time"] - start).dt.total_seconds().astype(np.int64)
    assert (offset == tx["tx_time_seconds"]).all()
    assert (tx["tx_time_seconds"] // SECONDS_PER_DAY == tx["tx_time_days"]).all()
    time_of_day = tx["tx_time_seconds"] % SECONDS_PER_DAY
    assert time_of_day.min() > 0 and time_of_day.max() < SECONDS_PER_DAY


def test_terminals_are_within_the_radius(small_world: World) -> None:
    tx = small_world.transactions
    cust = (
        small_world.customers.set_index("customer_id").loc[tx["customer_id"], ["x", "y"]].to_numpy()
    )
    term = (
        small_world.terminals.set_index("terminal_id").loc[tx["terminal_id"], ["x", "y"]].to_numpy()
    )
    assert np.hypot(*(cust - term).T).max() < small_world.params.radius
    # ... and the reach lists exactly the terminals within the radius (brute force)
    c = small_world.customers[["x", "y"]].to_numpy()
    t = small_world.terminals[["x", "y"]].to_numpy()
    within = (
        np.hypot(c[:, None, 0] - t[None, :, 0], c[:, None, 1] - t[None, :, 1])
        < small_world.params.radius
    )
    for customer in (0, 57, 199):
        assert small_world.reach.of(customer).tolist() == np.flatnonzero(within[customer]).tolist()


# ---------------------------------------------------------------- fraud scenarios


def test_scenario_1_amount_threshold(small_world: World) -> None:
    tx = small_world.transactions
    threshold = small_world.params.amount_threshold
    scenario = tx["tx_fraud_scenario"]
    assert (tx.loc[scenario == 1, "amount"] > threshold).all()
    # every amount above the threshold is fraud (scenario 1 unless 2 or 3 overwrote it)
    assert (tx.loc[tx["amount"] > threshold, "tx_fraud"] == 1).all()
    genuine = _genuine(small_world)
    above = genuine["amount"].to_numpy() > threshold
    assert above.sum() > 0
    assert set(scenario[above].unique()) <= {1, 2, 3}
    assert ((tx["tx_fraud"] == 1) == (scenario > 0)).all()


def test_scenario_2_compromised_terminals(small_world: World) -> None:
    tx = small_world.transactions
    p = small_world.params
    drawn = small_world.compromised_terminals
    max_day = int(tx["tx_time_days"].max())
    assert drawn["day"].tolist() == sorted(list(range(max_day)) * p.compromised_terminals_per_day)
    assert drawn.groupby("day")["terminal_id"].nunique().eq(p.compromised_terminals_per_day).all()

    in_window = np.zeros(len(tx), dtype=bool)
    for day, terminal in drawn.itertuples(index=False):
        in_window |= (
            (tx["terminal_id"] == terminal)
            & (tx["tx_time_days"] >= day)
            & (tx["tx_time_days"] < day + p.terminal_compromise_days)
        ).to_numpy()
    assert in_window.sum() > 100
    # every transaction there is fraud: scenario 2, unless scenario 3 came later
    assert set(tx.loc[in_window, "tx_fraud_scenario"].unique()) <= {2, 3}
    assert (tx.loc[in_window, "tx_fraud_scenario"] == 2).mean() > 0.8
    # and scenario 2 happens nowhere else
    assert not (tx.loc[~in_window, "tx_fraud_scenario"] == 2).any()


def test_scenario_3_compromised_customers(small_world: World) -> None:
    tx = small_world.transactions
    p = small_world.params
    genuine = _genuine(small_world)
    # Frauds change nothing but the amount and the labels.
    pd.testing.assert_frame_equal(
        tx[genuine.columns].drop(columns="amount"), genuine.drop(columns="amount")
    )
    s3 = (tx["tx_fraud_scenario"] == 3).to_numpy()
    assert s3.sum() > 50
    before, after = genuine["amount"].to_numpy(), tx["amount"].to_numpy()
    np.testing.assert_array_equal(after[~s3], before[~s3])
    once = np.round(before * p.fraud_amount_multiplier, 2)
    twice = np.round(once * p.fraud_amount_multiplier, 2)  # drawn on two overlapping days
    assert ((after[s3] == once[s3]) | (after[s3] == twice[s3])).all()
    assert (after[s3] == once[s3]).mean() > 0.9

    drawn = small_world.compromised_customers
    assert drawn.groupby("day")["customer_id"].nunique().eq(p.compromised_customers_per_day).all()
    at_risk = np.zeros(len(tx), dtype=bool)
    expected_max = 0
    for day, group in drawn.groupby("day"):
        window = (
            tx["customer_id"].isin(group["customer_id"])
            & (tx["tx_time_days"] >= day)
            & (tx["tx_time_days"] < day + p.customer_compromise_days)
        ).to_numpy()
        at_risk |= window
        expected_max += window.sum() // p.customer_fraud_one_in
    assert not (s3 & ~at_risk).any()  # only compromised customers, inside their windows
    # about one in three of the at-risk transactions (fewer when windows overlap)
    assert 0.7 * expected_max <= s3.sum() <= expected_max


def test_scenarios_can_be_switched_off() -> None:
    world = generate_world(
        small_params(
            compromised_terminals_per_day=0, compromised_customers_per_day=0, amount_threshold=1e9
        )
    )
    assert world.transactions["tx_fraud"].sum() == 0
    assert world.labels.empty


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("distribution", ["skewed", "uniform"])
def test_labels_exactly_the_frauds_within_the_delay(distribution: str) -> None:
    world = generate_world(small_params(label_delay_distribution=distribution))
    tx = world.transactions.set_index("transaction_id")
    labels = world.labels
    frauds = tx[tx["tx_fraud"] == 1]
    assert labels["transaction_id"].is_unique
    assert set(labels["transaction_id"]) == set(frauds.index)
    assert labels["is_fraud"].all()
    assert (
        labels["fraud_scenario"].to_numpy()
        == frauds.loc[labels["transaction_id"], "tx_fraud_scenario"].to_numpy()
    ).all()
    assert labels["reported_time"].is_monotonic_increasing
    delay = to_micros(labels["reported_time"]) - to_micros(
        tx.loc[labels["transaction_id"], "event_time"]
    )
    p = world.params
    assert delay.min() >= p.label_delay_min_hours * HOUR_US
    assert delay.max() <= p.label_delay_max_days * DAY_US
    median_days = np.median(delay) / DAY_US
    # skewed: most labels within two days; uniform: the middle of 1 h..7 d
    assert (0.9 < median_days < 2.5) if distribution == "skewed" else (3.0 < median_days < 4.0)


def test_fixed_label_delay() -> None:
    world = generate_world(small_params(label_delay_min_hours=48, label_delay_max_days=2))
    tx = world.transactions.set_index("transaction_id")
    delay = to_micros(world.labels["reported_time"]) - to_micros(
        tx.loc[world.labels["transaction_id"], "event_time"]
    )
    assert (delay == 2 * DAY_US).all()


# ---------------------------------------------------------------- statistics


def test_statistics_of_a_world_match_the_handbook_model() -> None:
    world = generate_world(SimulatorSettings(n_customers=2000, n_terminals=4000, n_days=60, seed=3))
    customers = world.customers.set_index("customer_id")
    genuine = _genuine(world)

    # U(0, 4) transactions per customer-day (mean 2), less the ~3% times dropped outside the day.
    assert customers["mean_nb_tx_per_day"].mean() == pytest.approx(2.0, rel=0.05)
    assert customers["mean_nb_tx_per_day"].between(0, 4).all()
    keep = norm.cdf(SECONDS_PER_DAY, 43_200, 20_000) - norm.cdf(1, 43_200, 20_000)
    active = world.reach.counts > 0
    expected = customers["mean_nb_tx_per_day"].to_numpy()[active].sum() * world.params.n_days * keep
    assert len(genuine) == pytest.approx(expected, rel=0.01)

    # Amount ~ N(m, m/2), negatives redrawn U(0, 2m): E = m * (Phi(2) + phi(2)/2 + Phi(-2)).
    factor = norm.cdf(2) + norm.pdf(2) / 2 + norm.cdf(-2)
    m = customers.loc[genuine["customer_id"], "mean_amount"].to_numpy()
    assert genuine["amount"].mean() == pytest.approx((m * factor).mean(), rel=0.01)
    assert genuine["amount"].min() >= 0
    assert (genuine["amount"] == genuine["amount"].round(2)).all()
    assert customers["mean_amount"].between(5, 100).all()
    assert np.allclose(customers["std_amount"], customers["mean_amount"] / 2)

    # Time of day: N(43200, 20000) truncated to (0, 86400): mean 43200, std ~18190.
    tod = genuine["tx_time_seconds"] % SECONDS_PER_DAY
    a = 43_200 / 20_000
    truncated_std = 20_000 * np.sqrt(1 - 2 * a * norm.pdf(a) / (2 * norm.cdf(a) - 1))
    assert tod.mean() == pytest.approx(43_200, abs=300)
    assert tod.std() == pytest.approx(truncated_std, rel=0.02)


def test_the_default_world_matches_the_handbook() -> None:
    """Handbook reference: ~1.75M transactions, ~0.84% fraud (~6.6% / 62% / 31% by scenario)."""
    world = generate_world(SimulatorSettings())
    tx = world.transactions
    assert 1_700_000 < len(tx) < 1_800_000
    assert 0.0075 < tx["tx_fraud"].mean() < 0.0095
    counts = world.fraud_counts()
    total = sum(counts.values())
    assert 0.04 < counts["1"] / total < 0.09
    assert 0.55 < counts["2"] / total < 0.70
    assert 0.25 < counts["3"] / total < 0.38
    assert world.generation_seconds < 30
    # int(time) outside 0 < t < 86400 is dropped; at this size ~7 draws truncate to 0 exactly
    time_of_day = tx["tx_time_seconds"] % SECONDS_PER_DAY
    assert (
        time_of_day.min() >= 1
        and (tx["tx_time_seconds"] // SECONDS_PER_DAY == tx["tx_time_days"]).all()
    )
