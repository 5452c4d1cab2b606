"""One entity's fresh-feature events as the online store holds them (`EntityEvents`).

The streaming feature pipeline cannot store finished feature values: a value depends on the
time t of the transaction that asks, which the writer does not know. So it stores what a
reader needs to finish the values at its own t (Chronon's "intermediate representation"):
the card's or terminal's transactions of its windows and the verdicts of those reported as
fraud. A reader turns them back into a `FreshState` (`FreshState.from_entity_events`) and asks
it: the window arithmetic stays written once.

Encoded as one little-endian int64 array (everything is an integer: microseconds, micro-units,
ids), cheap to write and read at stream rates (JSON cost a card step more than its work):

    [format, entity (0 card, 1 terminal), key, newest_us, as_of_us, n_tx, n_verdicts,
     n_tx x (transaction id, event time, amount micro-units, terminal, card),
     n_verdicts x (transaction id, report time, is fraud 0/1)]

`numpy.frombuffer(value, "<i8")` reads it with any tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cardscore.features.fresh import Entity

FORMAT_VERSION = 1
_ENTITY_CODES = {Entity.CARD: 0, Entity.TERMINAL: 1}
_ENTITIES = {code: entity for entity, code in _ENTITY_CODES.items()}
_HEADER = 7


@dataclass(frozen=True, eq=False)
class EntityEvents:
    entity: Entity
    key: int
    newest_us: int  # the entity's newest event time
    as_of_us: int  # the writer's clock when it wrote this (its newest event time of any entity)
    # n x 5 int64: (transaction id, event time, amount in micro-units, terminal id, card id), by (time, id)
    rows: np.ndarray
    # transaction id -> its verdicts (report time, is fraud), by report time
    verdicts: dict[int, tuple[tuple[int, bool], ...]] = field(default_factory=dict)

    @property
    def transactions(self) -> tuple[tuple[int, int, int, int, int], ...]:
        return tuple(map(tuple, self.rows.tolist()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntityEvents):
            return NotImplemented
        return ((self.entity, self.key, self.newest_us, self.as_of_us, self.verdicts)
                == (other.entity, other.key, other.newest_us, other.as_of_us, other.verdicts)
                and np.array_equal(self.rows, other.rows))

    def encode(self) -> bytes:
        flat_verdicts = [(i, r, int(f)) for i, vs in self.verdicts.items() for r, f in vs]
        n = len(self.rows)
        header = (FORMAT_VERSION, _ENTITY_CODES[self.entity], self.key, self.newest_us, self.as_of_us,
                  n, len(flat_verdicts))
        values = np.empty(_HEADER + 5 * n + 3 * len(flat_verdicts), dtype="<i8")
        values[:_HEADER] = header
        values[_HEADER:_HEADER + 5 * n] = self.rows.reshape(-1)
        if flat_verdicts:
            values[_HEADER + 5 * n:] = np.asarray(flat_verdicts, dtype="<i8").ravel()
        return values.tobytes()

    @classmethod
    def decode(cls, raw: bytes) -> EntityEvents:
        values = np.frombuffer(raw, dtype="<i8")
        if len(values) < _HEADER or values[0] != FORMAT_VERSION:
            found = int(values[0]) if len(values) else None
            raise ValueError(f"fresh entity events of format {found!r}, this reader knows {FORMAT_VERSION}")
        _version, entity, key, newest, as_of, n_tx, n_verdicts = (int(v) for v in values[:_HEADER])
        if len(values) != _HEADER + 5 * n_tx + 3 * n_verdicts:
            raise ValueError(f"fresh entity events of {len(values)} values, the header says {n_tx} + {n_verdicts} rows")
        rows = values[_HEADER:_HEADER + 5 * n_tx].reshape(n_tx, 5).astype(np.int64)
        verdicts: dict[int, list[tuple[int, bool]]] = {}
        for i, r, f in values[_HEADER + 5 * n_tx:].reshape(n_verdicts, 3).tolist():
            verdicts.setdefault(i, []).append((r, bool(f)))
        return cls(_ENTITIES[entity], key, newest, as_of, rows, {i: tuple(v) for i, v in verdicts.items()})
