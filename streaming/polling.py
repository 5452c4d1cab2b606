"""Taking a micro-batch from the consumer without waiting for it to fill up.

`consumer.consume(n, timeout)` returns when n messages are there OR the timeout expired: at a
few thousand events/s a batch of 500 never fills, so every batch waits the whole timeout
(with 100 ms, a p50 of ~60 ms before any work starts). `take_batch` returns as soon as there
is anything: what is already queued (up to `max_messages`, no wait), else it blocks up to
`max_wait_s` for the first message and then adds what arrived with it. Under load the batch
grows by itself (everything that queued up while the previous batch was processed); at low
rates each message is handled as soon as it is fetched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

# Consumer settings of every long-running consumer of the project (the stream scorer, the
# fresh-stream steps), under the `kafka.consumer` settings, which override them.
CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    # Low latency: a fetch returns as soon as one message is there (a batch still fills up
    # under load: take_batch hands over whatever queued while the previous batch was scored).
    "fetch.wait.max.ms": "5",
    "fetch.min.bytes": "1",
    # librdkafka leaves Nagle's algorithm on (the Java clients set TCP_NODELAY): a small fetch
    # or commit request then waits behind the broker's delayed ACK.
    "socket.nagle.disable": "true",
    "isolation.level": "read_committed",
    # Partitions added to the transactions topic are assigned at the next metadata refresh:
    # within 10 s instead of librdkafka's default 5 minutes (a metadata request per 10 s is
    # nothing for a broker).
    "topic.metadata.refresh.interval.ms": "10000",
    # Failover: a member that stops heartbeating loses its partitions after this long (see
    # streaming/README.md, "Restarts and failover", for the trade-off); Kafka's own default is
    # 45 s. librdkafka heartbeats from a background thread, so a slow batch does not count.
    "session.timeout.ms": "10000",
    "heartbeat.interval.ms": "1000",
}


class BatchConsumer(Protocol):
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]: ...


def take_batch(consumer: BatchConsumer, max_messages: int, max_wait_s: float,
               observe: Callable[[float], None] | None = None) -> list[Any]:
    """Up to `max_messages` messages (or events): at once if any are queued, else the first
    one to arrive within `max_wait_s` plus whatever is queued behind it. `observe(seconds)`
    gets the time spent taking queued messages, not the time spent waiting for traffic."""
    started = time.perf_counter()
    messages = consumer.consume(max_messages, 0)
    if not messages:
        messages = consumer.consume(1, max_wait_s)
        started = time.perf_counter()
        if messages and max_messages > 1:
            messages.extend(consumer.consume(max_messages - 1, 0))
    if messages and observe is not None:
        observe(time.perf_counter() - started)
    return messages
