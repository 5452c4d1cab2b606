"""The incremental online state of the fresh features, generated from `FRESH_FEATURES`.

Pure Python (no Spark, no broker): add a transaction, add a label report, ask for the features
of a transaction at time t. The stream scorer (card features) and the terminal/label consumer
group (terminal and label features) will each hold one (features/README.md, "Who computes what
online"); `features=` restricts a state to the features its component serves.

Per entity the transactions are kept sorted by (event time, transaction id): a late or
out-of-order event is inserted at its event time, so a query at t sees exactly the events
strictly before t that have arrived, whatever their arrival order. Duplicate transaction ids
are ignored (first arrival wins); a fraud's report time is the earliest report of its id.
Eviction keeps each entity's longest window plus the allowed lateness behind its newest event.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field

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


@dataclass(frozen=True, order=True)
class _Tx:
    us: int
    transaction_id: int
    amount_us: int
    terminal_id: int


@dataclass
class _History:
    """One card's or terminal's transactions, sorted by (event time, id)."""

    txs: list[_Tx] = field(default_factory=list)
    newest_us: int | None = None

    def add(self, tx: _Tx) -> None:
        insort(self.txs, tx)
        self.newest_us = tx.us if self.newest_us is None else max(self.newest_us, tx.us)

    def window(self, t: int, window_us: int) -> list[_Tx]:
        """The transactions with event time in [t - W, t)."""
        lo = bisect_left(self.txs, t - window_us, key=lambda tx: tx.us)
        hi = bisect_left(self.txs, t, key=lambda tx: tx.us)
        return self.txs[lo:hi]

    def evict(self, horizon_us: int) -> list[_Tx]:
        """Drop (and return) the transactions older than `horizon_us`."""
        cut = bisect_left(self.txs, horizon_us, key=lambda tx: tx.us)
        dropped, self.txs = self.txs[:cut], self.txs[cut:]
        return dropped


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
        self._transactions: dict[int, tuple[int, int, int]] = {}  # id -> (card, terminal, us)
        self._fraud_reported: dict[int, int] = {}  # id -> earliest valid fraud report time
        # id -> its fraud reports while the transaction is not seen (validity needs its time)
        self._pending: dict[int, list[int]] = {}
        self._holders: dict[int, int] = {}  # id -> number of histories still holding it

    # ------------------------------------------------------------------ events

    def add_transaction(self, transaction_id: int, card: int, terminal: int, us: int, amount: float) -> bool:
        """Count a transaction (at its event time, whenever it arrives). False for a duplicate id."""
        if transaction_id in self._transactions:
            return False
        self._transactions[transaction_id] = (card, terminal, us)
        tx = _Tx(us, transaction_id, amount_micros(amount), terminal)
        self._holders[transaction_id] = len(self._entities)
        for entity, key in ((Entity.CARD, card), (Entity.TERMINAL, terminal)):
            if entity in self._histories:
                history = self._histories[entity].setdefault(key, _History())
                history.add(tx)
                self._evict(entity, key, history)
        for reported in self._pending.pop(transaction_id, ()):
            self._record_fraud(transaction_id, reported)
        return True

    def add_label(self, transaction_id: int, is_fraud: bool, reported_us: int) -> None:
        """Record a label report. Only fraud reports count; the earliest report of an id wins."""
        if not is_fraud:
            return
        if transaction_id in self._transactions:
            self._record_fraud(transaction_id, reported_us)
        else:
            self._pending.setdefault(transaction_id, []).append(reported_us)

    def _record_fraud(self, transaction_id: int, reported_us: int) -> None:
        if reported_us < self._transactions[transaction_id][2]:
            return  # reported before its own transaction happened: invalid, never counts
        earlier = self._fraud_reported.get(transaction_id)
        self._fraud_reported[transaction_id] = reported_us if earlier is None else min(earlier, reported_us)

    def _evict(self, entity: Entity, key: int, history: _History) -> None:
        assert history.newest_us is not None
        for tx in history.evict(history.newest_us - self._keep_us[entity]):
            # Its id and fraud report go when no history holds it any more.
            self._holders[tx.transaction_id] -= 1
            if self._holders[tx.transaction_id] == 0:
                del self._holders[tx.transaction_id]
                self._transactions.pop(tx.transaction_id, None)
                self._fraud_reported.pop(tx.transaction_id, None)

    # ------------------------------------------------------------------ queries

    def features_at(self, card: int, terminal: int, t: int, amount: float) -> dict[str, int | float]:
        """The declared features of a transaction of `card` at `terminal`, time t, `amount`:
        from the events strictly before t that have arrived (unknown entities: empty windows)."""
        keys = {Entity.CARD: card, Entity.TERMINAL: terminal}
        windows: dict[tuple[Entity, int], list[_Tx]] = {}  # features sharing a window share its slice
        values: dict[str, int | float] = {}
        for f in self.features:
            window = windows.get((f.entity, f.window_us))
            if window is None:
                history = self._histories[f.entity].get(keys[f.entity])
                window = history.window(t, f.window_us) if history is not None else []
                windows[(f.entity, f.window_us)] = window
            values[f.name] = self._value(f, window, t, amount)
        return values

    def _value(self, f: FreshFeature, window: list[_Tx], t: int, amount: float) -> int | float:
        n = len(window)
        sum_us = sum(tx.amount_us for tx in window)
        mean = micros_to_amount(sum_us) / n if n else 0.0
        match f.aggregate:
            case Aggregate.COUNT:
                return n
            case Aggregate.SUM:
                return micros_to_amount(sum_us)
            case Aggregate.MEAN:
                return mean
            case Aggregate.SINCE_PREVIOUS:
                return float(t - window[-1].us) / float(MICROS_PER_SECOND) if n else NO_VALUE
            case Aggregate.DISTINCT_TERMINALS:
                return len({tx.terminal_id for tx in window})
            case Aggregate.OVER_MEAN:
                return float(amount) / mean if sum_us > 0 else NO_VALUE
            case Aggregate.FRAUDS_REPORTED:
                reported = self._fraud_reported
                return sum(1 for tx in window if reported.get(tx.transaction_id, t) < t)
        raise ValueError(f"unknown aggregate {f.aggregate}")

    # ------------------------------------------------------------------ introspection

    def size(self) -> int:
        """Transactions held over all entities (eviction keeps it bounded)."""
        return sum(len(h.txs) for histories in self._histories.values() for h in histories.values())
