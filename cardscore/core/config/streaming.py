"""Settings of the Kafka stream scorer (`cardscore stream`, `python -m cardscore.streaming`).

Topics, the broker address and client options (SASL/SSL) are in the shared `kafka` section;
`kafka.consumer` / `kafka.producer` pass librdkafka options through. The largest accepted
message is `ingest.max_line_bytes`: the stream and the batch ingest reject the same records.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cardscore.core.config.base import Section


class StreamingSettings(Section):
    """Settings of the Kafka stream scorer."""

    group_id: str = Field(
        "cardscore-stream-scorer",
        description="consumer group of the scorer processes; they share the topic's partitions",
    )
    batch_max_messages: int = Field(
        500, ge=1, le=100_000, description="a micro-batch is at most this many messages"
    )
    max_uncommitted_messages: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="at_least_once: scores and DLQ records produced and not yet confirmed "
        "committed, at most (unset: batch_max_messages, one batch). It is what a crash re-delivers "
        "at most; a larger window lets a full-speed scorer score the next batches while the broker "
        "acknowledges and commits earlier ones (throughput), at the price of more duplicates "
        "after a crash",
    )
    batch_max_wait_ms: int = Field(
        100, ge=1, le=60_000, description="... or what arrived within this many milliseconds"
    )
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once: idempotent producer, offsets committed after the broker "
        "acknowledged the batch's scores and DLQ records; exactly_once: transactional producer "
        "with the offsets in the transaction (needs a real Kafka; readers use read_committed)",
    )
    transactional_id_prefix: str = Field(
        "cardscore-stream-scorer",
        description="exactly_once: each process uses <prefix>-<instance id> as transactional.id",
    )
    model_alias: str = Field("champion", description="registry alias whose version scores")
    fresh_features: bool = Field(
        False,
        description="compute every transaction's fresh (event-time) features: the events `cardscore "
        "fresh-stream` stored in the online store, united with the transactions this scorer saw "
        "(features/README.md). Models of feature set snapshot_fresh_v1 are then served, and each score "
        "message logs the values and the stored rows' as-of times (score_event v3). Run the "
        "fresh-stream pipeline beside it: without it the terminal and label features see only this "
        "scorer's own transactions",
    )
    model_poll_seconds: float = Field(
        10.0,
        ge=0,
        description="look the alias up again after this many seconds (0: before every batch); "
        "a moved alias swaps the model between two batches",
    )
    model_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="threads of one model call; a micro-batch is small, and more threads than "
        "one mostly add OpenMP hand-off (measured 2 ms at 1 thread vs 66 ms at 2 on a busy "
        "2-core host for 500 rows): scale out with more processes instead",
    )
    delivery_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="how long a batch waits for the broker to acknowledge its scores before it "
        "is rewound and retried (also librdkafka's message.timeout.ms)",
    )
    retry_initial_seconds: float = Field(
        0.5, gt=0, description="first wait after a failed lookup or delivery (a failed offset "
        "commit has its own backoff, 0.5 s doubling to 5 s)"
    )
    retry_max_seconds: float = Field(30.0, gt=0, description="longest wait between retries")
    dlq_detail_max_chars: int = Field(
        512, ge=16, description="the DLQ `dlq.detail` header is cut to this many characters"
    )
    static_membership: bool = Field(
        True,
        description="a scorer started with --instance-id joins as a static group member "
        "(group.instance.id = the instance id): restarted under the same name it takes its "
        "partitions back at once; stopped for good, its partitions wait for the session timeout "
        "(kafka.consumer session.timeout.ms, 10 s by default). Without --instance-id members are "
        "dynamic",
    )
    duplicate_window: int = Field(
        100_000,
        ge=0,
        description="transaction ids remembered per partition to recognise a later message with "
        "the same id and other content (0: off); older ids are forgotten",
    )
    duplicate_conflicts: Literal["dead_letter", "score_flagged"] = Field(
        "dead_letter",
        description="a later message with a remembered transaction id and other content: "
        "dead_letter sends it to the DLQ (reason duplicate_conflict, as ingest rejects it); "
        "score_flagged scores it with the header cardscore.duplicate-conflict",
    )
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Prometheus /metrics port (0: off)"
    )
    metrics_host: str = Field("127.0.0.1", description="address the /metrics endpoint binds")
    lag_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="refresh the consumer_lag metric (high watermark - committed offset per "
        "assigned partition; one offset fetch from the group coordinator) at most this often",
    )
    progress_interval_seconds: float = Field(
        10.0,
        ge=0,
        description="log stream.progress (cumulative messages, scores, DLQ records by reason, "
        "retries, the rate since the last line) at most this often, when something changed "
        "(0: after every batch); each batch's own line is at DEBUG",
    )
    @property
    def max_uncommitted(self) -> int:
        """The uncommitted window in messages (what a crash re-delivers at most)."""
        return self.max_uncommitted_messages or self.batch_max_messages

    @model_validator(mode="after")
    def _retry_bounds(self) -> StreamingSettings:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must be >= retry_initial_seconds")
        if self.max_uncommitted_messages is not None and self.max_uncommitted_messages < self.batch_max_messages:
            raise ValueError("max_uncommitted_messages must be >= batch_max_messages (a whole batch must fit)")
        return self


class FreshStreamSettings(Section):
    """Settings of the streaming fresh-feature pipeline (`cardscore fresh-stream card|terminal`)."""

    card_group_id: str = Field(
        "cardscore-fresh-card",
        description="consumer group of the card step (transactions and labels topics, co-partitioned "
        "by card: the range assignor is enforced)",
    )
    terminal_group_id: str = Field(
        "cardscore-fresh-terminal", description="consumer group of the terminal step (the repartition topic)"
    )
    batch_max_messages: int = Field(
        2000, ge=1, le=100_000,
        description="a micro-batch is at most this many messages (a backlog is written in fewer, larger batches)")
    batch_max_wait_ms: int = Field(20, ge=1, le=60_000, description="... or what arrived within this many milliseconds")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port of a step (0: off; "
                              "the two steps of one host need two ports)")
    bootstrap_from_lake: bool = Field(
        True,
        description="on start, load the last 30 days (plus the allowed lateness) of silver transactions "
        "and label reports, so that a day streamed after the last ingested one sees its history",
    )
