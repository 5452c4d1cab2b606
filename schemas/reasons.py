"""Reason codes for rejected records, shared by the ingest quarantine and the stream DLQ."""

from enum import StrEnum


class RejectReason(StrEnum):
    ENCODING = "encoding"  # not UTF-8, byte-order mark, CR/LF line ending
    OVERSIZED = "oversized"  # line/message larger than the configured limit
    MALFORMED_JSON = "malformed_json"  # not parseable JSON
    NOT_AN_OBJECT = "not_an_object"  # JSON, but not an object
    MISSING_FIELD = "missing_field"  # a required field is absent
    NULL_FIELD = "null_field"  # a required field is null
    WRONG_TYPE = "wrong_type"  # a field has the wrong JSON type
    NOT_FINITE = "not_finite"  # NaN or +/-Infinity
    OUT_OF_RANGE = "out_of_range"  # negative or absurd values
    BAD_TIMESTAMP = "bad_timestamp"  # not RFC 3339 UTC with Z, or not a real instant
    OUTSIDE_DAY = "outside_day"  # event time not within the landing day
    OUTSIDE_WINDOW = "outside_window"  # landing day or event day too far from the pipeline's clock
    DUPLICATE_CONFLICT = "duplicate_conflict"  # same key as another record, different content
    # The record passed every contract check, yet processing it alone failed (the stream
    # isolates such a record from its batch; the detail names the error). Not a dependency
    # outage: those are retried, never rejected.
    UNPROCESSABLE = "unprocessable"
