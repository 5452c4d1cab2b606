"""The streaming fresh-feature pipeline's two steps, without a broker: what they store is what
a scorer finishes the features from, and that must be the README oracle's values exactly."""

from __future__ import annotations

import numpy as np
import pytest

from cardscore.features.fresh import FRESH_FEATURE_NAMES, Entity
from cardscore.features.fresh_events import EntityEvents
from cardscore.features.fresh_state import FreshState, features_from_events
from cardscore.streaming.fresh_steps import CardStep, Forward, TerminalStep
from tests.features.fresh_histories import History, random_history
from tests.features.fresh_oracle import oracle

CARD_PARTITIONS, TERMINAL_PARTITIONS = 3, 2
QUERY, TX, LABEL = 0, 1, 2  # at equal times: a query sees neither, a report at t is not seen at t


def tx_record(r) -> dict:
    return {"transaction_id": int(r.transaction_id), "customer_id": int(r.customer_id),
            "terminal_id": int(r.terminal_id), "event_time": int(r.us), "amount": float(r.amount)}


def label_record(r) -> dict:
    return {"transaction_id": int(r.transaction_id), "is_fraud": bool(r.is_fraud), "reported_time": int(r.reported_us)}


class Pipeline:
    """Card steps and terminal steps by partition, and the store they write (through JSON)."""

    def __init__(self, lateness: int | None = None) -> None:
        kw = {} if lateness is None else {"allowed_lateness_us": lateness}
        self.cards = [CardStep(**kw) for _ in range(CARD_PARTITIONS)]
        self.terminals = [TerminalStep(**kw) for _ in range(TERMINAL_PARTITIONS)]
        self.store: dict[tuple[Entity, int], EntityEvents] = {}
        self.repartition: list[list[bytes]] = [[] for _ in range(TERMINAL_PARTITIONS)]

    def card(self, partition: int, kind: int, record: dict) -> None:
        step = self.cards[partition]
        out = step.transaction(record) if kind == TX else step.label(record)
        for f in out:
            self.repartition[f.terminal % TERMINAL_PARTITIONS].append(f.to_json())
        self._save(step)

    def terminal(self, partition: int, count: int) -> None:
        queue = self.repartition[partition]
        taken, queue[:] = queue[:count], queue[count:]
        self.terminals[partition].forwards(Forward.from_json(raw) for raw in taken)
        self._save(self.terminals[partition])

    def drain(self) -> None:
        for p in range(TERMINAL_PARTITIONS):
            self.terminal(p, len(self.repartition[p]))

    def _save(self, step) -> None:
        for events in step.exports():
            self.store[(events.entity, events.key)] = EntityEvents.decode(events.encode())

    def served(self, r) -> dict:
        events = {Entity.CARD: self.store.get((Entity.CARD, int(r.customer_id))),
                  Entity.TERMINAL: self.store.get((Entity.TERMINAL, int(r.terminal_id)))}
        return features_from_events(events, int(r.customer_id), int(r.terminal_id), int(r.us), float(r.amount))


def card_of_label(history: History) -> dict[int, int]:
    return dict(zip(history.transactions["transaction_id"], history.transactions["customer_id"], strict=True))


@pytest.mark.parametrize("seed", range(8))
def test_what_the_steps_store_serves_the_oracle_values(seed: int) -> None:
    """Every event in time order through the card step of its card's partition, its forwards
    through the terminal steps at once (no lag); each transaction is served, from the stored
    events alone, just before it is counted: every feature equals the oracle, exactly."""
    history = random_history(seed, n_tx=300)
    cards = card_of_label(history)
    events = [(r.us, QUERY, r) for r in history.transactions.itertuples(index=False)]
    events += [(r.us, TX, r) for r in history.transactions.itertuples(index=False)]
    events += [(r.reported_us, LABEL, r) for r in history.labels.itertuples(index=False)]
    events.sort(key=lambda e: (e[0], e[1]))
    pipeline = Pipeline()
    served = {}
    for _, kind, r in events:
        if kind == QUERY:
            served[r.transaction_id] = pipeline.served(r)
            continue
        card = r.customer_id if kind == TX else cards.get(r.transaction_id, 0)
        pipeline.card(int(card) % CARD_PARTITIONS, kind, tx_record(r) if kind == TX else label_record(r))
        pipeline.drain()
    expected = oracle(history.transactions, history.labels)
    for name in FRESH_FEATURE_NAMES:
        got = [served[i][name] for i in expected["transaction_id"]]
        diff = np.flatnonzero(np.asarray(got) != expected[name].to_numpy())
        assert diff.size == 0, f"seed {seed}, {name}: {diff.size} transactions differ"


@pytest.mark.parametrize("seed", range(6))
def test_any_interleaving_of_partitions_and_a_second_pass_store_the_same(seed: int) -> None:
    """Partitions consumed in a random interleaving (each in its own order), the repartition
    topic in random chunks, then every message again (a restart from the beginning): the store
    holds exactly what one state fed every event holds, and the second pass changes nothing."""
    history = random_history(seed, n_tx=300)
    cards = card_of_label(history)
    rng = np.random.default_rng(seed + 4000)
    partitions: list[list[tuple[int, dict]]] = [[] for _ in range(CARD_PARTITIONS)]
    ordered = sorted([(r.us, TX, r) for r in history.transactions.itertuples(index=False)]
                     + [(r.reported_us, LABEL, r) for r in history.labels.itertuples(index=False)],
                     key=lambda e: (e[0], e[1]))
    for _, kind, r in ordered:
        card = r.customer_id if kind == TX else cards.get(r.transaction_id, int(rng.integers(0, 100)))
        partitions[int(card) % CARD_PARTITIONS].append((kind, tx_record(r) if kind == TX else label_record(r)))
    whole = FreshState(allowed_lateness_us=10**15)  # lateness beyond the history: no eviction anywhere
    for r in history.transactions.itertuples(index=False):
        whole.add_transaction(r.transaction_id, r.customer_id, r.terminal_id, r.us, r.amount)
    for r in history.labels.itertuples(index=False):
        whole.add_label(r.transaction_id, bool(r.is_fraud), r.reported_us)

    pipeline = Pipeline(lateness=10**15)
    snapshots = []
    for _ in range(2):
        cursors = [0] * CARD_PARTITIONS
        while any(c < len(p) for c, p in zip(cursors, partitions, strict=True)):
            p = int(rng.choice([i for i in range(CARD_PARTITIONS) if cursors[i] < len(partitions[i])]))
            pipeline.card(p, *partitions[p][cursors[p]])
            cursors[p] += 1
            if rng.random() < 0.3:
                t = int(rng.integers(0, TERMINAL_PARTITIONS))
                pipeline.terminal(t, int(rng.integers(1, 20)))
        pipeline.drain()
        snapshots.append({k: (v.transactions, v.verdicts, v.newest_us) for k, v in pipeline.store.items()})
    assert snapshots[0] == snapshots[1]
    for (entity, key), (transactions, verdicts, newest) in snapshots[0].items():
        want = whole.entity_events(entity, key)
        assert want is not None
        assert (transactions, verdicts, newest) == (want.transactions, want.verdicts, want.newest_us), (entity, key)
    held = {(e, k) for e in Entity for k in (history.transactions["customer_id" if e is Entity.CARD else "terminal_id"])}
    assert set(snapshots[0]) == held


def test_a_verdict_waits_for_its_transaction_and_invalid_ones_go_nowhere() -> None:
    step = CardStep()
    assert step.label({"transaction_id": 1, "is_fraud": True, "reported_time": 5_000}) == []
    assert step.label({"transaction_id": 1, "is_fraud": True, "reported_time": 500}) == []  # before the transaction
    out = step.transaction({"transaction_id": 1, "customer_id": 7, "terminal_id": 9, "event_time": 1_000, "amount": 2.5})
    assert [(f.terminal, f.is_verdict, f.reported_us, f.is_fraud) for f in out] == [(9, False, None, None), (9, True, 5_000, True)]
    assert out[0].amount_us == 2_500_000 and Forward.from_json(out[1].to_json()) == out[1]
    assert step.transaction({"transaction_id": 1, "customer_id": 7, "terminal_id": 9, "event_time": 1_000, "amount": 2.5}) == []
    assert step.label({"transaction_id": 1, "is_fraud": True, "reported_time": 999}) == []
    [exported] = step.exports()
    assert (exported.key, exported.as_of_us, exported.verdicts) == (7, 5_000, {1: ((5_000, True),)})
    assert step.exports() == []  # nothing changed since
