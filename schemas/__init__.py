"""Data contracts: one definition per record shape; Spark, Arrow and JSON schemas derive from it."""

from cardscore.schemas.contract import Contract, Field, FieldType
from cardscore.schemas.contracts import (
    ALL_CONTRACTS,
    BRONZE_RECORD,
    LABEL_EVENT,
    PREDICTION_RECORD,
    QUARANTINE_RECORD,
    SCORE_EVENT,
    SILVER_LABEL,
    SILVER_TRANSACTION,
    TRANSACTION_EVENT,
)
from cardscore.schemas.reasons import RejectReason

__all__ = [
    "ALL_CONTRACTS",
    "BRONZE_RECORD",
    "LABEL_EVENT",
    "PREDICTION_RECORD",
    "QUARANTINE_RECORD",
    "SCORE_EVENT",
    "SILVER_LABEL",
    "SILVER_TRANSACTION",
    "TRANSACTION_EVENT",
    "Contract",
    "Field",
    "FieldType",
    "RejectReason",
]
