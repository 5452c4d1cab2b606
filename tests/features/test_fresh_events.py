"""One entity's exported events (what the online store holds) answer its features exactly as
the live state that exported them, for every t the live state answers exactly."""

from __future__ import annotations

import numpy as np
import pytest

from cardscore.features.fresh import ALLOWED_LATENESS_US, FRESH_FEATURES, Entity, features_of
from cardscore.features.fresh_events import EntityEvents
from cardscore.features.fresh_state import FreshState
from tests.features.fresh_histories import BASE_US, DAY, HOUR, random_history


def restored(events: EntityEvents) -> FreshState:
    return FreshState.from_entity_events(EntityEvents.decode(events.encode()))


@pytest.mark.parametrize("seed", range(8))
def test_exported_events_answer_like_the_live_state(seed: int) -> None:
    """Events streamed in time order; after each, the card's and the terminal's exports (through
    JSON) answer queries at t from the entity's newest time minus the lateness onwards exactly
    like the live state, for every feature of the entity (reported frauds included)."""
    history = random_history(seed, n_tx=300)
    rng = np.random.default_rng(seed + 3000)
    events = [(r.us, 0, "tx", r) for r in history.transactions.itertuples(index=False)]
    events += [(r.reported_us, 1, "label", r) for r in history.labels.itertuples(index=False)]
    events.sort(key=lambda e: (e[0], e[1]))
    live = FreshState()
    checked = 0
    for i, (_, _, kind, r) in enumerate(events):
        if kind == "tx":
            live.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, r.us, r.amount)
        else:
            live.add_label(r.transaction_id, bool(r.is_fraud), r.reported_us)
        if kind != "tx" or i % 7:
            continue
        for entity, key in ((Entity.CARD, r.customer_id), (Entity.TERMINAL, r.terminal_id)):
            exported = live.entity_events(entity, key)
            assert exported is not None and exported.entity is entity and exported.key == key
            copy = restored(exported)
            names = [f.name for f in features_of(entity)]
            for dt in (-ALLOWED_LATENESS_US, -1, 0, 1, int(rng.integers(0, 3 * DAY)), 29 * DAY):
                t = exported.newest_us + dt
                want = live.features_at(r.customer_id, r.terminal_id, t, r.amount)
                got = copy.features_at(r.customer_id, r.terminal_id, t, r.amount)
                assert {n: got[n] for n in names} == {n: want[n] for n in names}, (seed, entity, key, dt)
                checked += 1
    assert checked > 100


def test_an_export_holds_only_what_its_windows_need() -> None:
    """A terminal's export keeps its transactions of the last day plus the lateness (its count
    windows; the lateness is a day) and its reported frauds of 28 days plus the lateness, not
    every transaction of 28 days."""
    live = FreshState()
    for i in range(40):  # one transaction a day, every 10th reported as fraud an hour later
        live.add_transaction(i, card=1, terminal=2, us=BASE_US + i * DAY, amount=1.0)
        if i % 10 == 0:
            live.add_label(i, True, BASE_US + i * DAY + HOUR)
    terminal = live.entity_events(Entity.TERMINAL, 2)
    assert ALLOWED_LATENESS_US == DAY
    assert [tx[0] for tx in terminal.transactions] == [10, 20, 30, 37, 38, 39]  # frauds of 29 d, the last 2 days
    assert all(tx[4] == 1 for tx in terminal.transactions)  # each with its card
    assert set(terminal.verdicts) == {10, 20, 30}
    card = live.entity_events(Entity.CARD, 1)  # the card's 30-day mean needs all 30 days + the lateness
    assert [tx[0] for tx in card.transactions] == list(range(8, 40))
    assert live.entity_events(Entity.CARD, 99) is None
    assert EntityEvents.decode(card.encode()) == card


def test_an_unknown_format_is_refused() -> None:
    text = FreshState().entity_events(Entity.CARD, 1)
    assert text is None
    with pytest.raises(ValueError, match="format 99"):
        EntityEvents.decode(np.array([99, 0, 0, 0, 0, 0, 0], dtype="<i8").tobytes())
    with pytest.raises(ValueError, match="the header says"):
        EntityEvents.decode(np.array([1, 0, 7, 0, 0, 2, 0, 1, 2, 3], dtype="<i8").tobytes())


def test_every_declared_feature_belongs_to_an_exportable_entity() -> None:
    assert {f.entity for f in FRESH_FEATURES} == set(Entity)
