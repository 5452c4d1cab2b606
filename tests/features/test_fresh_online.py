"""A scorer's fresh features (`FreshOnlineFeatures`): the stored events of the streaming
pipeline (the real Feast SQLite online store) united with the transactions the scorer saw.
With no pipeline lag every value is the oracle's; with the pipeline behind, the card's own
windows stay exact (the scorer saw every transaction of its cards) and every other difference
is explained by the as-of times the rows carry."""

from __future__ import annotations

import numpy as np
import pytest

from cardscore.core.config import Settings
from cardscore.features.fresh import FRESH_FEATURE_NAMES, FRESH_FEATURES, Aggregate, Entity
from cardscore.features.fresh_online import NOT_STORED, FreshOnlineFeatures
from cardscore.features.fresh_store import FreshEventsStore
from cardscore.features.store import apply
from cardscore.streaming.fresh_steps import CardStep, Forward, TerminalStep
from tests.features.fresh_histories import random_history
from tests.features.fresh_oracle import oracle

# The card's features that its own transactions decide (not the reported frauds).
CARD_OWN = [f.name for f in FRESH_FEATURES if f.entity is Entity.CARD and f.aggregate is not Aggregate.FRAUDS_REPORTED]


def events_in_time_order(history):
    events = [(r.us, 1, "tx", r) for r in history.transactions.itertuples(index=False)]
    events += [(r.reported_us, 2, "label", r) for r in history.labels.itertuples(index=False)]
    return [(kind, r) for _, _, kind, r in sorted(events, key=lambda e: (e[0], e[1]))]


def feed(card: CardStep, terminal: TerminalStep, store: FreshEventsStore, kind: str, r) -> None:
    if kind == "tx":
        out = card.transaction({"transaction_id": int(r.transaction_id), "customer_id": int(r.customer_id),
                                "terminal_id": int(r.terminal_id), "event_time": int(r.us), "amount": float(r.amount)})
    else:
        out = card.label({"transaction_id": int(r.transaction_id), "is_fraud": bool(r.is_fraud),
                          "reported_time": int(r.reported_us)})
    terminal.forwards(Forward.from_json(f.to_json()) for f in out)
    store.write([*card.exports(), *terminal.exports()])


def one(r) -> tuple[np.ndarray, ...]:
    return (np.array([r.transaction_id]), np.array([r.customer_id]), np.array([r.terminal_id]),
            np.array([r.amount]), np.array([r.us]))


@pytest.fixture
def store(settings: Settings) -> FreshEventsStore:
    return FreshEventsStore(apply(settings))


@pytest.mark.parametrize("lag", [0, 25])
def test_served_values_are_the_oracles_or_explained_by_the_pipelines_lag(store: FreshEventsStore, lag: int) -> None:
    """The pipeline processes the events in time order, `lag` events behind the scorer, which
    scores each transaction when its time comes (one at a time, as a stream would)."""
    history = random_history(seed=5 + lag, n_tx=150)
    expected = oracle(history.transactions, history.labels).set_index("transaction_id")
    events = events_in_time_order(history)
    card, terminal = CardStep(), TerminalStep()
    online = FreshOnlineFeatures(store)
    fed = 0
    served, as_of = {}, {}
    for i, (kind, r) in enumerate(events):
        while fed < i - lag:  # the pipeline, `lag` events behind
            feed(card, terminal, store, *events[fed])
            fed += 1
        if kind != "tx":
            continue
        rows = online.read(*one(r))
        served[r.transaction_id] = dict(zip(online.names, rows.matrix[0].tolist(), strict=True))
        as_of[r.transaction_id] = (int(rows.card_as_of_us[0]), int(rows.terminal_as_of_us[0]), r.us)
    mismatched = 0
    for transaction_id, values in served.items():
        want = expected.loc[transaction_id]
        for name in CARD_OWN:  # the scorer saw every earlier transaction of its card itself
            assert values[name] == want[name], (lag, transaction_id, name)
        differs = [n for n in FRESH_FEATURE_NAMES if values[n] != want[n]]
        if differs:
            mismatched += 1
            card_as_of, terminal_as_of, t = as_of[transaction_id]
            # explained: the pipeline's row was older than the transaction (or never written)
            assert min(card_as_of, terminal_as_of) < t or NOT_STORED in (card_as_of, terminal_as_of), (
                lag, transaction_id, differs)
    if lag == 0:
        assert mismatched == 0
    else:
        assert mismatched > 0  # the lag is real and shows


def test_a_transaction_from_the_future_is_answered_but_never_kept(store: FreshEventsStore) -> None:
    """A transaction far ahead of the clock (valid by the contract, up to 2199) would move its
    card's and terminal's newest time decades ahead and evict their history: it is scored on
    the features at its time but not added, so the next real transaction still sees it all."""
    online = FreshOnlineFeatures(store)
    now = 1_600_000_000_000_000
    minute = 60_000_000
    day = 24 * 60 * minute
    for i in range(3):
        online.read(*(np.array([v]) for v in (i, 7, 9, 10.0, now - (3 - i) * minute)), now_us=now)
    future = online.read(*(np.array([v]) for v in (99, 7, 9, 10.0, now + 100 * day)), now_us=now)
    assert len(future.matrix) == 1  # answered (at its time, nothing of the card is that recent)
    after = online.read(*(np.array([v]) for v in (4, 7, 9, 10.0, now)), now_us=now)
    values = dict(zip(online.names, after.matrix[0].tolist(), strict=True))
    assert values["card_nb_tx_10min"] == 3 and values["terminal_nb_tx_1h"] == 3
    # within the tolerance (a day ahead of the clock) a transaction is kept as any other
    online.read(*(np.array([v]) for v in (5, 7, 9, 10.0, now + day // 2)), now_us=now)
    assert online.state.transaction(5) is not None and online.state.transaction(99) is None
