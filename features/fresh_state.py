"""The incremental online state of the fresh features, generated from `FRESH_FEATURES`.

Pure Python (no Spark, no broker): add a transaction, add a label report, ask for the features
of a transaction at time t. The stream scorer (card features) and the terminal/label consumer
group (terminal and label features) will each hold one (features/README.md, "Who computes what
online"); `features=` restricts a state to the features its component serves.

Per entity the transactions are kept sorted by (event time, transaction id): a late or
out-of-order event is inserted at its event time, so a query at t sees exactly the events
strictly before t that have arrived, whatever their arrival order. Duplicate transaction ids
are ignored (first arrival wins); every valid label report of an id is kept, and the latest
one before t says whether it is a reported fraud at t (a repeated report changes nothing, a
genuine verdict after a fraud report retracts it from then on).
Eviction keeps each entity's longest window plus the allowed lateness behind its newest event.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np

from cardscore.features.fresh import (
    ALLOWED_LATENESS_US,
    FRESH_FEATURES,
    MICROS_PER_SECOND,
    NO_VALUE,
    Aggregate,
    Entity,
    FreshFeature,
    amount_micros,
    features_of,
    longest_window_us,
    micros_to_amount,
)
from cardscore.features.fresh_events import EntityEvents


@dataclass(frozen=True, slots=True)
class _Tx:
    us: int
    transaction_id: int
    amount_us: int
    terminal_id: int
    card_id: int


_ROW_COLUMNS = 5  # (transaction id, event time, amount micro-units, terminal, card): EntityEvents rows


class _History:
    """One card's or terminal's transactions, sorted by (event time, id).

    Kept beside them, so that a query costs two bisections instead of a pass over its window:
    `times`, their event times; `cumulative`, running sums of their amounts in micro-units
    (the window [lo, hi) sums to cumulative[hi] - cumulative[lo], exact integers; an in-order
    event appends, a late one adds its amount to the sums after it); `frauds`, those of them
    with a valid fraud report at some time (few: a reported-frauds count looks at these only,
    asking each whether it is a fraud at t); `rows`, the same transactions as int64 rows of
    `EntityEvents` (the first len(txs) rows of a buffer), so an export is a slice, not a loop."""

    __slots__ = ("cumulative", "frauds", "newest_us", "rows", "times", "txs")

    def __init__(self) -> None:
        self.txs: list[_Tx] = []
        self.times: list[int] = []
        self.cumulative: list[int] = [0]
        self.frauds: list[_Tx] = []
        self.newest_us: int | None = None
        self.rows = np.empty((4, _ROW_COLUMNS), dtype=np.int64)

    def add(self, tx: _Tx) -> None:
        times, txs, cumulative = self.times, self.txs, self.cumulative
        i = bisect_right(times, tx.us)
        while i > 0 and times[i - 1] == tx.us and txs[i - 1].transaction_id > tx.transaction_id:
            i -= 1  # equal times: ordered by id
        n = len(txs)
        if n == len(self.rows):
            self.rows = np.concatenate([self.rows, np.empty_like(self.rows)])
        if i < n:
            self.rows[i + 1:n + 1] = self.rows[i:n].copy()
        self.rows[i] = (tx.transaction_id, tx.us, tx.amount_us, tx.terminal_id, tx.card_id)
        times.insert(i, tx.us)
        txs.insert(i, tx)
        cumulative.insert(i + 1, cumulative[i] + tx.amount_us)
        for j in range(i + 2, len(cumulative)):  # a late event: the sums after it grow
            cumulative[j] += tx.amount_us
        self.newest_us = tx.us if self.newest_us is None else max(self.newest_us, tx.us)

    def bounds(self, t: int, window_us: int) -> tuple[int, int]:
        """The slice [lo, hi) of the transactions with event time in [t - W, t)."""
        return bisect_left(self.times, t - window_us), bisect_left(self.times, t)

    def evict(self, horizon_us: int) -> list[_Tx]:
        """Drop (and return) the transactions older than `horizon_us`."""
        cut = bisect_left(self.times, horizon_us)
        if not cut:
            return []
        dropped = self.txs[:cut]
        n = len(self.txs)
        self.rows[:n - cut] = self.rows[cut:n].copy()
        del self.txs[:cut]
        del self.times[:cut]
        del self.cumulative[:cut]  # differences of the rest are unchanged
        if self.frauds:
            self.frauds = [f for f in self.frauds if f.us >= horizon_us]
        return dropped


# What a window's features need besides its count (computed once per window and query).
_NEEDS_SUM = frozenset({Aggregate.SUM, Aggregate.MEAN, Aggregate.OVER_MEAN})


class FreshState:
    """Fresh-feature state of every card and terminal seen (see the module docstring)."""

    def __init__(
        self,
        features: tuple[FreshFeature, ...] = FRESH_FEATURES,
        allowed_lateness_us: int = ALLOWED_LATENESS_US,
    ) -> None:
        self.features = features
        self.allowed_lateness_us = allowed_lateness_us
        self._entities = tuple(e for e in Entity if features_of(e, features))
        self._histories: dict[Entity, dict[int, _History]] = {e: {} for e in self._entities}
        self._keep_us = {e: longest_window_us(e, features) + allowed_lateness_us for e in self._entities}
        # per entity, the longest window that counts transactions (not only reported frauds)
        self._counted_window_us = {
            e: max((f.window_us for f in features_of(e, features) if f.aggregate is not Aggregate.FRAUDS_REPORTED),
                   default=0)
            for e in self._entities
        }
        # Features sharing an (entity, window) share one look at it: the windows, what each
        # needs, and per feature (declaration order) its window's index and aggregate.
        self._needs: dict[tuple[Entity, int], frozenset[Aggregate]] = {}
        for f in features:
            group = (f.entity, f.window_us)
            self._needs[group] = self._needs.get(group, frozenset()) | {f.aggregate}
        self._groups = list(self._needs)
        self._plan = [(f.name, self._groups.index((f.entity, f.window_us)), f.aggregate) for f in features]
        self._transactions: dict[int, tuple[int, int, _Tx]] = {}  # id -> (card, terminal, itself)
        # id -> its valid verdicts: report times (sorted, distinct) and whether each says fraud
        self._verdicts: dict[int, tuple[list[int], list[bool]]] = {}
        # id -> its reports (time, is fraud) while the transaction is not seen (validity needs its time)
        self._pending: dict[int, list[tuple[int, bool]]] = {}
        self._pending_times: list[tuple[int, int]] = []  # heap of (report time, id) of _pending
        self._clock_us: int | None = None  # the newest event time seen (transaction or report)
        self._pending_keep_us = max(self._keep_us.values(), default=0)
        self._holders: dict[int, int] = {}  # id -> number of histories still holding it

    # ------------------------------------------------------------------ events

    def add_transaction(self, transaction_id: int, card: int, terminal: int, us: int, amount: float) -> bool:
        """Count a transaction (at its event time, whenever it arrives). False for a duplicate id."""
        return self.add_transaction_micro_units(transaction_id, card, terminal, us, amount_micros(amount))

    def add_transaction_micro_units(self, transaction_id: int, card: int, terminal: int, us: int, amount_us: int) -> bool:
        """`add_transaction` with the amount already in integer micro-units (`amount_micros`)."""
        if transaction_id in self._transactions:
            return False
        tx = _Tx(us, transaction_id, amount_us, terminal, card)
        self._transactions[transaction_id] = (card, terminal, tx)
        self._holders[transaction_id] = len(self._entities)
        for entity, key in ((Entity.CARD, card), (Entity.TERMINAL, terminal)):
            if entity in self._histories:
                history = self._histories[entity].get(key)
                if history is None:
                    history = self._histories[entity][key] = _History()
                history.add(tx)
                self._evict(entity, key, history)
        reports = self._pending.pop(transaction_id, ())
        if transaction_id in self._transactions:  # not when it came too late and was evicted at once
            for reported, is_fraud in reports:
                self._record_verdict(transaction_id, is_fraud, reported)
        self._advance_clock(us)
        return True

    def add_label(self, transaction_id: int, is_fraud: bool, reported_us: int) -> None:
        """Record a label report: from its time on, the id's latest report says whether it is
        a reported fraud (a genuine verdict after a fraud report retracts it)."""
        if transaction_id in self._transactions:
            self._record_verdict(transaction_id, bool(is_fraud), reported_us)
        else:
            self._pending.setdefault(transaction_id, []).append((reported_us, bool(is_fraud)))
            heapq.heappush(self._pending_times, (reported_us, transaction_id))
        self._advance_clock(reported_us)

    def _advance_clock(self, us: int) -> None:
        """Expire the fraud reports of transactions still unseen once the newest event time is
        past their report time by the longest window plus the allowed lateness: their
        transaction (at or before the report, or the report is invalid) would arrive later than
        that behind the stream and count for no window the state still serves. Without this, a
        long-running consumer would hold every report of a transaction it never sees (older
        than its history, or unknown) forever."""
        if self._clock_us is not None and us <= self._clock_us:
            return
        self._clock_us = us
        horizon = us - self._pending_keep_us
        heap = self._pending_times
        while heap and heap[0][0] < horizon:
            reported, transaction_id = heapq.heappop(heap)
            reports = self._pending.get(transaction_id)
            if reports is not None:
                reports[:] = [r for r in reports if r[0] != reported]
                if not reports:
                    del self._pending[transaction_id]

    def _record_verdict(self, transaction_id: int, is_fraud: bool, reported_us: int) -> None:
        card, terminal, tx = self._transactions[transaction_id]
        if reported_us < tx.us:
            return  # reported before its own transaction happened: invalid, never counts
        # A genuine verdict is kept too: a fraud report of an earlier time may arrive after it.
        times, frauds = self._verdicts.setdefault(transaction_id, ([], []))
        was_fraud_ever = any(frauds)
        i = bisect_left(times, reported_us)
        if i < len(times) and times[i] == reported_us:
            frauds[i] = frauds[i] or is_fraud  # reports at one time: fraud if any says fraud
        else:
            times.insert(i, reported_us)
            frauds.insert(i, is_fraud)
        if is_fraud and not was_fraud_ever:
            # An entry of a history that evicted it already is older than any window it serves.
            for entity, key in ((Entity.CARD, card), (Entity.TERMINAL, terminal)):
                history = self._histories.get(entity, {}).get(key)
                if history is not None:
                    history.frauds.append(tx)

    def _fraud_at(self, transaction_id: int, t: int) -> bool:
        """Whether the id's latest verdict reported before t says fraud."""
        verdicts = self._verdicts.get(transaction_id)
        if verdicts is None:
            return False
        times, frauds = verdicts
        i = bisect_left(times, t)
        return i > 0 and frauds[i - 1]

    def _evict(self, entity: Entity, key: int, history: _History) -> None:
        assert history.newest_us is not None
        for tx in history.evict(history.newest_us - self._keep_us[entity]):
            # Its id and fraud report go when no history holds it any more.
            self._holders[tx.transaction_id] -= 1
            if self._holders[tx.transaction_id] == 0:
                del self._holders[tx.transaction_id]
                self._transactions.pop(tx.transaction_id, None)
                self._verdicts.pop(tx.transaction_id, None)

    # ------------------------------------------------------------------ queries

    def features_at(self, card: int, terminal: int, t: int, amount: float) -> dict[str, int | float]:
        """The declared features of a transaction of `card` at `terminal`, time t, `amount`:
        from the events strictly before t that have arrived (unknown entities: empty windows).
        Features sharing an (entity, window) share one pass over it."""
        keys = {Entity.CARD: card, Entity.TERMINAL: terminal}
        stats = [self._window_stats(entity, keys[entity], window_us, t) for entity, window_us in self._groups]
        value = self._value
        return {name: value(aggregate, stats[group], t, amount) for name, group, aggregate in self._plan}

    def _window_stats(self, entity: Entity, key: int, window_us: int, t: int) -> tuple[int, int, int, int, int]:
        """(count, amount sum in micro-units, distinct terminals, frauds reported before t) of
        the window [t - W, t); the parts no feature of the window needs are 0, the latest
        event time is the last element."""
        history = self._histories[entity].get(key)
        if history is None:
            return 0, 0, 0, 0, 0
        lo, hi = history.bounds(t, window_us)
        n = hi - lo
        if not n:
            return 0, 0, 0, 0, 0
        needs = self._needs[(entity, window_us)]
        sum_us = history.cumulative[hi] - history.cumulative[lo] if needs & _NEEDS_SUM else 0
        distinct = (len({tx.terminal_id for tx in history.txs[lo:hi]})
                    if Aggregate.DISTINCT_TERMINALS in needs else 0)
        frauds = 0
        if Aggregate.FRAUDS_REPORTED in needs and history.frauds:
            fraud_at, start = self._fraud_at, t - window_us
            frauds = sum(1 for f in history.frauds if start <= f.us < t and fraud_at(f.transaction_id, t))
        return n, sum_us, distinct, frauds, history.times[hi - 1]

    @staticmethod
    def _value(aggregate: Aggregate, window: tuple, t: int, amount: float) -> int | float:
        n, sum_us, distinct, frauds, last_us = window
        match aggregate:
            case Aggregate.COUNT:
                return n
            case Aggregate.SUM:
                return micros_to_amount(sum_us)
            case Aggregate.MEAN:
                return micros_to_amount(sum_us) / n if n else 0.0
            case Aggregate.SINCE_PREVIOUS:
                return float(t - last_us) / float(MICROS_PER_SECOND) if n else NO_VALUE
            case Aggregate.DISTINCT_TERMINALS:
                return distinct
            case Aggregate.OVER_MEAN:
                return float(amount) / (micros_to_amount(sum_us) / n) if sum_us > 0 else NO_VALUE
            case Aggregate.FRAUDS_REPORTED:
                return frauds
        raise ValueError(f"unknown aggregate {aggregate}")

    def transaction(self, transaction_id: int) -> tuple[int, int, int, int] | None:
        """(card, terminal, event time, amount in micro-units) of a transaction still held."""
        held = self._transactions.get(transaction_id)
        if held is None:
            return None
        card, terminal, tx = held
        return card, terminal, tx.us, tx.amount_us

    def verdicts(self, transaction_id: int) -> tuple[tuple[int, bool], ...]:
        """The valid verdicts (report time, is fraud) recorded for a held transaction."""
        times, frauds = self._verdicts.get(transaction_id, ((), ()))
        return tuple(zip(times, frauds, strict=True))

    # ------------------------------------------------------------------ one entity's events

    def entity_events(self, entity: Entity, key: int, as_of_us: int | None = None) -> EntityEvents | None:
        """What a state needs of this entity to answer its features exactly at any t no earlier
        than the entity's newest event time minus the allowed lateness (the queries the live
        state itself answers exactly): the transactions of the longest window that counts
        them plus the lateness, and the transactions with a fraud report (with every verdict).
        None for an entity never seen. `as_of_us` is the writer's clock (default: its newest
        event time), recorded so that a reader can tell how far the writer had got."""
        history = self._histories[entity].get(key)
        if history is None or history.newest_us is None:
            return None
        counted = self._counted_window_us[entity]
        # The history is sorted by (time, id): the counted windows' part is a slice of its rows;
        # the reported frauds before it (few) are added in front, in the same order.
        n = len(history.txs)
        start = bisect_left(history.times, history.newest_us - counted - self.allowed_lateness_us) if counted else n
        first = history.txs[start] if start < n else None
        older = sorted((f for f in history.frauds
                        if first is None or (f.us, f.transaction_id) < (first.us, first.transaction_id)),
                       key=lambda tx: (tx.us, tx.transaction_id))
        rows = history.rows[start:n]
        if older:
            rows = np.concatenate([np.array([(f.transaction_id, f.us, f.amount_us, f.terminal_id, f.card_id)
                                             for f in older], dtype=np.int64).reshape(-1, 5), rows])
        held = self._verdicts
        verdicts = {i: self.verdicts(i) for i in rows[:, 0].tolist() if i in held} if held else {}
        return EntityEvents(
            entity=entity,
            key=key,
            newest_us=history.newest_us,
            as_of_us=history.newest_us if as_of_us is None else as_of_us,
            rows=rows.copy(),
            verdicts=verdicts,
        )

    @classmethod
    def from_entity_events(cls, events: EntityEvents, features: tuple[FreshFeature, ...] = FRESH_FEATURES,
                           allowed_lateness_us: int = ALLOWED_LATENESS_US) -> FreshState:
        """A state holding one entity's exported events, answering that entity's features (of
        `features`) exactly as the state that exported them would."""
        state = cls(features_of(events.entity, features), allowed_lateness_us)
        state.add_entity_events(events)
        return state

    def add_entity_events(self, events: EntityEvents) -> None:
        """Add an entity's exported events (transactions, then their verdicts): what is held
        already is a duplicate id or a repeated verdict, and changes nothing."""
        for transaction_id, us, amount_us, terminal, card in events.rows.tolist():
            self.add_transaction_micro_units(transaction_id, card, terminal, us, amount_us)
        for transaction_id, verdicts in events.verdicts.items():
            for reported_us, is_fraud in verdicts:
                self.add_label(transaction_id, is_fraud, reported_us)

    # ------------------------------------------------------------------ introspection

    def size(self) -> int:
        """Transactions held over all entities (eviction keeps it bounded)."""
        return sum(len(h.txs) for histories in self._histories.values() for h in histories.values())

    def pending_reports(self) -> int:
        """Label reports held for transactions not seen yet (expiry keeps it bounded)."""
        return sum(len(r) for r in self._pending.values())


def features_from_events(events: dict[Entity, EntityEvents | None], card: int, terminal: int, t: int,
                         amount: float, features: tuple[FreshFeature, ...] = FRESH_FEATURES) -> dict[str, int | float]:
    """The features (of `features`, declaration order) of a transaction at t, finished from the
    stored events of its card and terminal (None: the entity was never seen, so its windows are
    empty). Exact when the events hold everything of the entity before t."""
    values: dict[str, int | float] = {}
    for entity in {f.entity for f in features}:
        stored = events.get(entity)
        if stored is None:
            state = FreshState(features_of(entity, features))
        else:
            state = FreshState.from_entity_events(stored, features)
        values |= state.features_at(card, terminal, t, amount)
    return {f.name: values[f.name] for f in features}
