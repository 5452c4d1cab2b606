"""A transaction id seen twice with different content: the stream's side of ingest's
`duplicate_conflict` rule.

The policy (streaming/README.md, "Duplicate transaction ids"):

* the first message with an id is scored when it arrives (a stream cannot wait for a later
  copy; ingest, which sees a whole day, rejects every copy of a conflicting id instead);
* a later message with the same id and the same content (the contract's fields) is a repeat:
  an upstream retry or a re-delivery. It is scored again: same key, same model, same score;
* a later message with the same id and different content is a conflict. With
  `streaming.duplicate_conflicts: dead_letter` (default) it goes to the DLQ with reason
  `duplicate_conflict`, the reason ingest gives, and the header `dlq.duplicate.first` naming
  where the first one is; with `score_flagged` it is scored and its score message carries the
  header `cardscore.duplicate-conflict` with that location. Both count in
  `cardscore_stream_duplicate_conflicts_total`.

State, bounded: per assigned partition, the last `streaming.duplicate_window` ids seen (an LRU
of id -> content digest and where it was first seen), dropped when the partition is revoked
or lost. What it cannot catch: copies in different partitions (the key routes by customer, so
a copy with another customer_id may land elsewhere), copies across a restart or a rebalance
(the state is in memory, per owner), and copies farther apart than the window. Ingest's checks
(within a landing day, and against every id already published) catch those in the batch path.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from cardscore.streaming.messages import TransactionBatch

Partition = tuple[str, int]


# A remembered id's content digest (of the contract fields but the id) and the offset of the
# first message with it, in its partition. A plain tuple of ints on purpose: the collector stops
# tracking such a tuple at the first collection that sees it (a NamedTuple or a dataclass stays
# tracked), and the window holds up to `duplicate_window` of them per partition, which every
# full collection would otherwise scan.
Seen = tuple[int, int]


def _location(partition: Partition, offset: int) -> str:
    return f"{partition[0]}[{partition[1]}]@{offset}"


class RecentTransactions:
    """Per partition, an LRU of the most recent transaction ids and their content digests."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: dict[Partition, OrderedDict[int, Seen]] = {}
        self._last: tuple[TransactionBatch, _Rows] | None = None  # `conflicts` then `remember` it

    def conflicts(self, batch: TransactionBatch) -> dict[int, str]:
        """Rows of `batch` whose id was seen (earlier in this batch, or remembered) with other
        content: row -> location of the first one. A repeat with the same content (or the same
        message read again) is no conflict."""
        if self.window <= 0 or not len(batch):
            return {}
        out: dict[int, str] = {}
        in_batch: dict[tuple[Partition, int], Seen] = {}
        no_ids: dict[int, Seen] = {}
        rows = self._rows(batch)
        for row, (tx, digest, partition, offset) in enumerate(zip(*rows, strict=True)):
            first = in_batch.get((partition, tx))
            if first is None:
                first = self._seen.get(partition, no_ids).get(tx)
            if first is None:
                in_batch[(partition, tx)] = (digest, offset)
            elif first[0] != digest:
                out[row] = _location(partition, first[1])
        return out

    def remember(self, batch: TransactionBatch, rows: np.ndarray) -> None:
        """Record the given rows of `batch` (scored, delivered) as seen; the oldest ids beyond
        the window are forgotten."""
        if self.window <= 0:
            return
        ids, digests, partitions, offsets = self._rows(batch)
        self._last = None
        window = self.window
        for row in rows.tolist():
            partition = partitions[row]
            recent = self._seen.get(partition)
            if recent is None:
                recent = self._seen[partition] = OrderedDict()
            tx = ids[row]
            if tx in recent:
                recent.move_to_end(tx)  # the first occurrence stays the reference
            else:
                recent[tx] = (digests[row], offsets[row])
                if len(recent) > window:
                    recent.popitem(last=False)

    def forget(self, partitions: set[Partition]) -> None:
        for partition in partitions:
            self._seen.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(recent) for recent in self._seen.values())

    def _rows(self, batch: TransactionBatch) -> _Rows:
        """The batch's ids, digests, partitions and offsets, computed once for the batch that
        `conflicts` judged and `remember` then records (the scorer's usual sequence)."""
        if self._last is not None and self._last[0] is batch:
            return self._last[1]
        partitions: dict[tuple[str | None, int | None], Partition] = {}  # one tuple each
        places, offsets = [], []
        for message in batch.messages:
            key = (message.topic(), message.partition())
            partition = partitions.get(key)
            if partition is None:
                partition = partitions[key] = (key[0] or "", key[1] or 0)
            places.append(partition)
            offsets.append(message.offset() or 0)
        rows = (batch.transaction_id.tolist(), _digests(batch), places, offsets)
        self._last = (batch, rows)
        return rows


_Rows = tuple[list[int], list[int], list[Partition], list[int]]


def _digests(batch: TransactionBatch) -> list[int]:
    """A digest of each row's content (every contract field but the id), exact for ints and
    floats; in-process only, so Python's hash of a tuple of numbers is enough."""
    return [
        hash(row)
        for row in zip(
            batch.customer_id.tolist(),
            batch.terminal_id.tolist(),
            batch.amount.tolist(),
            batch.event_time_us.tolist(),
            strict=True,
        )
    ]
