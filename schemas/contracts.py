"""The project's data contracts: the one place each record shape is defined.

Partition columns come last (that is where engines put them in stored tables).
Bump `version` on any change; `schemas.compat` checks each change against the committed
snapshots in `schemas/snapshots/` and rejects breaking ones.
"""

from __future__ import annotations

from cardscore.schemas.contract import Contract, Field, FieldType
from cardscore.schemas.timestamps import parse_timestamp_us

# Sanity bounds shared by batch ingest and the stream scorer.
MAX_AMOUNT = 100_000.0
MAX_ID = 2**63 - 1
# The one range of event times, enforced by ingest and the stream alike, inside what every part
# of the scorer serves exactly: from the Unix epoch (Feast hands a request time to on-demand
# features as whole seconds truncated toward zero, which floors only from 1970 on: before it
# a night flag would come from the wrong hour) to the end of 2199 (well inside pandas'
# nanosecond timestamps, which end in April 2262). Epoch microseconds, bounds included.
EVENT_TIME_MIN = "1970-01-01T00:00:00Z"
EVENT_TIME_MAX = "2199-12-31T23:59:59.999999Z"
EVENT_TIME_MIN_US = parse_timestamp_us(EVENT_TIME_MIN)
EVENT_TIME_MAX_US = parse_timestamp_us(EVENT_TIME_MAX)

TRANSACTION_EVENT = Contract(
    name="transaction_event",
    # v2: event_time bounded to [EVENT_TIME_MIN, EVENT_TIME_MAX] (v1 accepted years 1-9999,
    # which the scorer could not serve).
    version=2,
    description="A card payment authorisation as the upstream emits it (landing JSON lines, Kafka).",
    key=("transaction_id",),
    fields=(
        Field("transaction_id", FieldType.LONG, "unique id of the transaction", minimum=0, maximum=MAX_ID),
        Field(
            "event_time",
            FieldType.TIMESTAMP,
            f"authorisation time, UTC (RFC 3339 with Z), from {EVENT_TIME_MIN} to {EVENT_TIME_MAX}",
            minimum=EVENT_TIME_MIN_US,
            maximum=EVENT_TIME_MAX_US,
        ),
        Field("customer_id", FieldType.LONG, "card/customer id", minimum=0, maximum=MAX_ID),
        Field("terminal_id", FieldType.LONG, "merchant terminal id", minimum=0, maximum=MAX_ID),
        Field("amount", FieldType.DOUBLE, "amount in the card currency", minimum=0.0, maximum=MAX_AMOUNT),
    ),
)

LABEL_EVENT = Contract(
    name="label_event",
    # v2: reported_time bounded to [EVENT_TIME_MIN, EVENT_TIME_MAX], the range of event times
    # (v1 accepted years 1-9999: a report in year 1 counted as known before every transaction).
    version=2,
    description="A fraud confirmation (chargeback or investigation outcome) for a past transaction.",
    key=("transaction_id",),
    fields=(
        Field("transaction_id", FieldType.LONG, "the labelled transaction", minimum=0, maximum=MAX_ID),
        Field("is_fraud", FieldType.BOOLEAN, "true: confirmed fraud; false: confirmed genuine"),
        Field(
            "reported_time",
            FieldType.TIMESTAMP,
            f"when the label became known, UTC (RFC 3339 with Z), from {EVENT_TIME_MIN} to {EVENT_TIME_MAX}",
            minimum=EVENT_TIME_MIN_US,
            maximum=EVENT_TIME_MAX_US,
        ),
        Field(
            "fraud_scenario",
            FieldType.INT,
            "simulator scenario (1 amount, 2 terminal, 3 customer); analysis only, never a feature",
            nullable=True,
            minimum=0,
            maximum=99,
        ),
    ),
)

_LINEAGE = (
    Field("source_file", FieldType.STRING, "landing file the record came from"),
    Field("load_id", FieldType.STRING, "id of the ingest run that loaded it"),
    Field("ingested_at", FieldType.TIMESTAMP, "when the ingest run loaded it, UTC"),
)

BRONZE_RECORD = Contract(
    name="bronze_record",
    version=1,
    description="A raw landing line, as received, with its lineage.",
    key=("source_file", "line_number"),
    partition_by=("landing_date",),
    fields=(
        Field("raw", FieldType.STRING, "the line's text, undecoded", nullable=True),
        Field("line_number", FieldType.LONG, "1-based line number in the source file", minimum=1),
        *_LINEAGE,
        Field("landing_date", FieldType.DATE, "the landing folder's day (partition)"),
    ),
)

SILVER_TRANSACTION = Contract(
    name="silver_transaction",
    version=2,  # v2: transaction_event v2's event_time range
    description="A validated transaction, typed to the contract, one row per transaction id.",
    key=("transaction_id",),
    partition_by=("tx_date",),
    fields=(
        *TRANSACTION_EVENT.fields,
        *_LINEAGE,
        Field("tx_date", FieldType.DATE, "UTC date of event_time (partition)"),
    ),
)

SILVER_LABEL = Contract(
    name="silver_label",
    version=2,  # v2: label_event v2's reported_time range
    description="A validated label, one row per transaction id (the latest report wins).",
    key=("transaction_id",),
    partition_by=("reported_date",),
    fields=(
        *LABEL_EVENT.fields,
        *_LINEAGE,
        Field("reported_date", FieldType.DATE, "UTC date of reported_time (partition)"),
    ),
)

SILVER_LABEL_REPORT = Contract(
    name="silver_label_report",
    version=2,  # v2: label_event v2's reported_time range
    description="Every validated label report (silver_label keeps only the latest per transaction): "
    "the fresh features count a fraud from its earliest report.",
    key=("transaction_id", "reported_time"),
    partition_by=("reported_date",),
    fields=(
        *LABEL_EVENT.fields,
        *_LINEAGE,
        Field("reported_date", FieldType.DATE, "UTC date of reported_time (partition)"),
    ),
)

QUARANTINE_RECORD = Contract(
    name="quarantine_record",
    version=1,
    description="A rejected input record with the reason; raw text kept for repair and replay.",
    key=("source_file", "line_number"),
    partition_by=("landing_date",),
    fields=(
        Field("source", FieldType.STRING, "which feed: transactions or labels"),
        Field("source_file", FieldType.STRING, "landing file"),
        Field("line_number", FieldType.LONG, "1-based line number in the file", minimum=1),
        Field("reason", FieldType.STRING, "reason code (schemas.reasons.RejectReason)"),
        Field("detail", FieldType.STRING, "human-readable explanation", nullable=True),
        Field("raw", FieldType.STRING, "the rejected line's text (may be truncated)", nullable=True),
        Field("raw_truncated", FieldType.BOOLEAN, "true when raw was cut to the size limit"),
        Field("load_id", FieldType.STRING, "id of the ingest run"),
        Field("quarantined_at", FieldType.TIMESTAMP, "when it was quarantined, UTC"),
        Field("landing_date", FieldType.DATE, "the landing folder's day (partition)"),
    ),
)

# What every score says about the release that produced it (score_event v2, prediction_record v2).
RELEASE_FIELDS = (
    Field("arm", FieldType.STRING, "release arm that served the score: champion, canary or fallback "
          "(rule-based, when frozen or no model could be loaded); null in v1 records (champion)",
          nullable=True, max_length=16),
    Field("fallback", FieldType.BOOLEAN, "true when the rule-based fallback produced the score "
          "(model_version then names the rules' version)", nullable=True),
    Field("shadow_model_version", FieldType.STRING, "version that produced shadow_score: the shadow "
          "version on the champion arm, the champion on the canary arm", nullable=True),
    Field("shadow_score", FieldType.DOUBLE, "score of the model not served for this transaction "
          "(recorded for comparison, never acted on)", nullable=True, minimum=0.0, maximum=1.0),
)

# What a score says about the fresh (event-time) features it read (score_event v3,
# prediction_record v3): the served values, logged with the score so the skew audit against
# gold.fresh_features needs no replay, and how far the online pipeline had got (its event-time
# clock when it wrote the stored rows), so a difference can be told apart as lag.
FRESH_SERVING_FIELDS = (
    Field("fresh_features", FieldType.STRING, "the fresh (event-time) feature values the score read, "
          "a JSON object feature name -> number (features/fresh.py); null when the scorer served none "
          "(the batch scorer's are gold.fresh_features' rows of the transaction)", nullable=True),
    Field("fresh_card_as_of", FieldType.TIMESTAMP, "the fresh-feature pipeline's event-time clock when it "
          "wrote the card's stored events the score read; null: none stored, or no fresh features served",
          nullable=True),
    Field("fresh_terminal_as_of", FieldType.TIMESTAMP, "the same for the terminal's stored events",
          nullable=True),
)

SCORE_EVENT = Contract(
    name="score_event",
    version=3,
    description="A fraud score for one transaction: the stream scorer's output message and the "
    "core of the batch predictions table, so both scorers publish the same shape.",
    key=("transaction_id",),
    fields=(
        Field("transaction_id", FieldType.LONG, "the scored transaction", minimum=0, maximum=MAX_ID),
        Field("customer_id", FieldType.LONG, "card/customer id", minimum=0, maximum=MAX_ID),
        Field("terminal_id", FieldType.LONG, "merchant terminal id", minimum=0, maximum=MAX_ID),
        Field("event_time", FieldType.TIMESTAMP, "the transaction's event time, UTC"),
        Field("score", FieldType.DOUBLE, "fraud probability from the model", minimum=0.0, maximum=1.0),
        Field("model_name", FieldType.STRING, "registered model name"),
        Field("model_version", FieldType.STRING, "registered model version that produced the score"),
        Field("feature_snapshot_date", FieldType.DATE, "day of the feature snapshot used", nullable=True),
        Field("unknown_customer", FieldType.BOOLEAN, "customer absent from the snapshot: defaults used"),
        Field("unknown_terminal", FieldType.BOOLEAN, "terminal absent from the snapshot: defaults used"),
        Field("scored_at", FieldType.TIMESTAMP, "when the score was produced, UTC"),
        # v2, safe model releases (nullable: v1 producers and stored v1 rows stay valid; a
        # missing arm means the champion, as v1 scorers only ever served it).
        *RELEASE_FIELDS,
        # v3, fresh features (nullable: v2 records served none).
        *FRESH_SERVING_FIELDS,
    ),
)

PREDICTION_RECORD = Contract(
    name="prediction_record",
    version=3,
    description="A row of the nightly batch predictions table (one per transaction and day).",
    key=("transaction_id",),
    partition_by=("tx_date",),
    fields=(
        *SCORE_EVENT.fields,
        Field("run_id", FieldType.STRING, "the batch scoring run that wrote the row"),
        Field("tx_date", FieldType.DATE, "UTC date of event_time (partition)"),
    ),
)

ALL_CONTRACTS: dict[str, Contract] = {
    c.name: c
    for c in (
        TRANSACTION_EVENT,
        LABEL_EVENT,
        BRONZE_RECORD,
        SILVER_TRANSACTION,
        SILVER_LABEL,
        SILVER_LABEL_REPORT,
        QUARANTINE_RECORD,
        SCORE_EVENT,
        PREDICTION_RECORD,
    )
}
