"""One entity's fresh-feature events as the online store holds them (`EntityEvents`).

The streaming feature pipeline cannot store finished feature values: a value depends on the
time t of the transaction that asks, which the writer does not know. So it stores what a
reader needs to finish the values at its own t (Chronon's "intermediate representation"):
the card's or terminal's transactions of its windows and the verdicts of those reported as
fraud. A reader turns them back into a one-entity `FreshState`
(`FreshState.from_entity_events`) and asks it: the window arithmetic stays written once.

Encoded as compact JSON (integers only: microseconds, micro-units, ids), so a record is
readable with any tool and the same in SQLite and Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cardscore.features.fresh import Entity

FORMAT_VERSION = 1


@dataclass(frozen=True)
class EntityEvents:
    entity: Entity
    key: int
    newest_us: int  # the entity's newest event time
    as_of_us: int  # the writer's clock when it wrote this (its newest event time of any entity)
    # (transaction id, event time, amount in micro-units, terminal id), by (time, id)
    transactions: tuple[tuple[int, int, int, int], ...]
    # transaction id -> its verdicts (report time, is fraud), by report time
    verdicts: dict[int, tuple[tuple[int, bool], ...]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": FORMAT_VERSION,
                "entity": self.entity.value,
                "key": self.key,
                "newest_us": self.newest_us,
                "as_of_us": self.as_of_us,
                "tx": [list(t) for t in self.transactions],
                "verdicts": {str(k): [[r, int(f)] for r, f in v] for k, v in self.verdicts.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> EntityEvents:
        data = json.loads(text)
        if data.get("v") != FORMAT_VERSION:
            raise ValueError(f"fresh entity events of format {data.get('v')!r}, this reader knows {FORMAT_VERSION}")
        return cls(
            entity=Entity(data["entity"]),
            key=int(data["key"]),
            newest_us=int(data["newest_us"]),
            as_of_us=int(data["as_of_us"]),
            transactions=tuple((int(i), int(u), int(a), int(m)) for i, u, a, m in data["tx"]),
            verdicts={int(k): tuple((int(r), bool(f)) for r, f in v) for k, v in data["verdicts"].items()},
        )
