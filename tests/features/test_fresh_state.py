"""The online fresh-feature state against the README oracle, exactly (no tolerance: sums are
integer micro-units on both sides, and every float comes out of the same IEEE operations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cardscore.features.fresh import (
    ALLOWED_LATENESS_US,
    FRESH_FEATURE_NAMES,
    FRESH_FEATURES,
    Entity,
    amount_micros,
)
from cardscore.features.fresh_state import FreshState
from tests.features.fresh_histories import BASE_US, HOUR, History, random_history
from tests.features.fresh_oracle import INTEGER_FEATURES, README_TABLE, micro_units, oracle

SEEDS = range(12)


def assert_equal_to_oracle(history: History, served: list[dict[str, int | float]]) -> None:
    expected = oracle(history.transactions, history.labels)
    got = pd.DataFrame(served)
    assert len(got) == len(expected)
    for name in FRESH_FEATURE_NAMES:
        diff = np.flatnonzero(got[name].to_numpy() != expected[name].to_numpy())
        assert diff.size == 0, (
            f"seed {history.seed}, {name}: {diff.size} rows differ, first at transaction "
            f"{expected['transaction_id'][diff[0]]}: served {got[name][diff[0]]!r}, oracle {expected[name][diff[0]]!r}"
        )


def query_all(state: FreshState, tx: pd.DataFrame) -> list[dict[str, int | float]]:
    return [
        state.features_at(r.customer_id, r.terminal_id, r.us, r.amount)
        for r in tx.itertuples(index=False)
    ]


def test_the_declaration_is_the_readme_table() -> None:
    entity_column = {Entity.CARD: "customer_id", Entity.TERMINAL: "terminal_id"}
    declared = {f.name: (entity_column[f.entity], f.window_us) for f in FRESH_FEATURES}
    assert declared == {name: (column, w) for name, (column, w, _) in README_TABLE.items()}
    assert {f.name for f in FRESH_FEATURES if f.dtype == "int64"} == INTEGER_FEATURES


def test_amount_micro_units_round_half_up() -> None:
    for amount in (0.0, 0.1, 2.5, 1.0000005, 0.0000015, 99_999.999999, 100_000.0, 12.34):
        assert amount_micros(amount) == micro_units(amount)
    assert amount_micros(1.0000005) == 1_000_001  # the double product is exactly ...0.5
    assert amount_micros(-2.5e-6) == -3  # half away from zero, as Spark's round


@pytest.mark.parametrize("seed", SEEDS)
def test_everything_arrived_in_any_order_equals_the_oracle(seed: int) -> None:
    """Every event added in a random arrival order (labels before their transactions too), then
    every transaction queried: exactly the oracle (no eviction: lateness beyond the history)."""
    history = random_history(seed)
    state = FreshState(allowed_lateness_us=10**15)
    rng = np.random.default_rng(seed + 1000)
    events = [("tx", r) for r in history.transactions.itertuples(index=False)]
    events += [("label", r) for r in history.labels.itertuples(index=False)]
    for i in rng.permutation(len(events)):
        kind, r = events[i]
        if kind == "tx":
            assert state.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, r.us, r.amount)
        else:
            state.add_label(r.transaction_id, bool(r.is_fraud), r.reported_us)
    assert_equal_to_oracle(history, query_all(state, history.transactions))


@pytest.mark.parametrize("seed", SEEDS)
def test_streamed_with_late_events_and_eviction_equals_the_oracle(seed: int) -> None:
    """The stream: every event arrives up to half the allowed lateness after its time, in
    arrival order, and each transaction is scored once everything before it can have arrived
    (its time plus that delay). With eviction on (the default lateness), still exact."""
    history = random_history(seed, n_tx=400)
    rng = np.random.default_rng(seed + 2000)
    max_delay = ALLOWED_LATENESS_US // 2
    actions: list[tuple[int, int, str, object]] = []  # (when, tie-break, what, record)
    for r in history.transactions.itertuples(index=False):
        actions.append((r.us + int(rng.integers(0, max_delay + 1)), int(rng.integers(1 << 30)), "tx", r))
        actions.append((r.us + max_delay + 1, int(rng.integers(1 << 30)), "query", r))
    for r in history.labels.itertuples(index=False):
        actions.append((r.reported_us + int(rng.integers(0, max_delay + 1)), int(rng.integers(1 << 30)), "label", r))
    actions.sort(key=lambda a: (a[0], a[1]))
    state = FreshState()
    served: dict[int, dict[str, int | float]] = {}
    largest = 0
    for _, _, what, r in actions:
        if what == "tx":
            state.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, r.us, r.amount)
        elif what == "label":
            state.add_label(r.transaction_id, bool(r.is_fraud), r.reported_us)
        else:
            served[r.transaction_id] = state.features_at(r.customer_id, r.terminal_id, r.us, r.amount)
        largest = max(largest, state.size())
    assert_equal_to_oracle(history, [served[i] for i in history.transactions["transaction_id"]])
    span = history.transactions["us"].max() - history.transactions["us"].min()
    if span > 31 * 24 * HOUR:  # a history longer than the longest window: eviction kept it bounded
        assert state.size() < 2 * len(history.transactions)  # both entities held every tx otherwise


def test_duplicates_are_counted_once() -> None:
    history = random_history(3)
    once, twice = FreshState(allowed_lateness_us=10**15), FreshState(allowed_lateness_us=10**15)
    for state, copies in ((once, 1), (twice, 2)):
        for _ in range(copies):
            added = [
                state.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, r.us, r.amount)
                for r in history.transactions.itertuples(index=False)
            ]
            assert all(added) == (state is once or _ == 0)
            for r in history.labels.itertuples(index=False):
                state.add_label(r.transaction_id, bool(r.is_fraud), r.reported_us)
    assert not any(
        twice.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, r.us, r.amount)
        for r in history.transactions.itertuples(index=False)
    )
    assert query_all(twice, history.transactions) == query_all(once, history.transactions)
    assert_equal_to_oracle(history, query_all(twice, history.transactions))


def test_unknown_entities_get_the_empty_window_values() -> None:
    state = FreshState()
    state.add_transaction(1, card=7, terminal=8, us=BASE_US, amount=10.0)
    state.add_label(1, True, BASE_US + 1)
    empty = state.features_at(card=99, terminal=98, t=BASE_US + HOUR, amount=5.0)
    expected = {
        name: (-1.0 if what in {"since_previous", "over_mean"} else 0 if name in INTEGER_FEATURES else 0.0)
        for name, (_, _, what) in README_TABLE.items()
    }
    assert empty == expected
    known = state.features_at(card=7, terminal=8, t=BASE_US + HOUR, amount=5.0)
    assert known["card_nb_tx_1h"] == 1 and known["card_seconds_since_previous_tx"] == 3600.0
    assert known["card_amount_over_mean_30d"] == 0.5 and known["terminal_nb_frauds_reported_7d"] == 1
    # At the transaction's own time nothing is seen: strictly before t.
    assert state.features_at(card=7, terminal=8, t=BASE_US, amount=5.0) == expected


def test_reports_of_transactions_never_seen_expire_behind_the_stream() -> None:
    """A consumer that never sees a report's transaction (older than its history, or unknown)
    does not hold the report forever: once the newest event is past the report by the longest
    window plus the allowed lateness, it is gone; a report still within that is kept, and
    counts when its (very late) transaction arrives."""
    state = FreshState()
    keep = 30 * 24 * HOUR + ALLOWED_LATENESS_US  # the longest window (the card's 30 days) + lateness
    for i in range(100):
        state.add_label(10_000 + i, True, BASE_US + i)
    state.add_label(20_000, False, BASE_US)  # a genuine verdict is held too: it may retract a fraud report
    assert state.pending_reports() == 101
    state.add_transaction(1, card=1, terminal=1, us=BASE_US + keep + 50, amount=1.0)
    assert state.pending_reports() == 50  # reported before BASE_US + 50: expired
    state.add_transaction(10_099, card=7, terminal=8, us=BASE_US + 90, amount=2.0)
    state.add_transaction(10_000, card=5, terminal=6, us=BASE_US, amount=2.0)
    assert state.pending_reports() == 49
    assert state.features_at(card=7, terminal=8, t=BASE_US + 100, amount=1.0)["card_nb_frauds_reported_30d"] == 1
    assert state.features_at(card=5, terminal=6, t=BASE_US + 100, amount=1.0)["card_nb_frauds_reported_30d"] == 0


def test_a_genuine_verdict_retracts_a_fraud_report_from_its_time_on() -> None:
    """The latest report before t decides: fraud at r1, genuine at r2, fraud again at r3 count
    on (r1, r2] and after r3; a genuine verdict at the fraud report's own time loses to it; the
    same whatever order the reports arrive in."""
    r1, r2, r3 = BASE_US + HOUR, BASE_US + 3 * HOUR, BASE_US + 6 * HOUR
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        state = FreshState()
        state.add_transaction(1, card=7, terminal=8, us=BASE_US, amount=10.0)
        reports = [(True, r1), (False, r2), (True, r3), (False, r1)]  # the last: at r1, the fraud wins
        for i in order:
            state.add_label(1, *reports[i])
        counted = [state.features_at(card=7, terminal=9, t=t, amount=1.0)["card_nb_frauds_reported_30d"]
                   for t in (r1, r1 + 1, r2, r2 + 1, r3, r3 + 1)]
        assert counted == [0, 1, 1, 0, 0, 1], order


def test_a_transaction_older_than_every_window_with_a_waiting_report_is_dropped_quietly() -> None:
    """A transaction arriving so late that its histories evict it at once, while a report of it
    was waiting: counted for nothing, no error (it used to raise KeyError)."""
    state = FreshState()
    state.add_transaction(1, card=7, terminal=8, us=BASE_US + 40 * 24 * HOUR, amount=1.0)
    state.add_label(2, True, BASE_US + 40 * 24 * HOUR - 1)
    assert state.add_transaction(2, card=7, terminal=8, us=BASE_US, amount=1.0)
    assert state.transaction(2) is None and state.pending_reports() == 0
    assert state.features_at(7, 8, BASE_US + 40 * 24 * HOUR + 1, 1.0)["card_nb_tx_24h"] == 1
