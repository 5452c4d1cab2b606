"""Serve the offline fresh features (`gold.fresh_features`) to the readers that need them:
the batch scorer, training sets and monitoring, one way for all three.

Fresh features are per transaction (features/README.md, "Fresh features"), so serving them
is an equi-join on `transaction_id` with the rows of the transactions' days; what matters is
that no transaction is served without its row (a null would reach the booster as a missing
value it never saw in training), so every reader counts the transactions without one and
refuses to go on (`FreshRowsMissing`, naming the command that builds them).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from cardscore.core import catalog
from cardscore.core.errors import MissingInput
from cardscore.features.fresh import FRESH_FEATURE_NAMES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from cardscore.core.lake import Lake

TRANSACTION_ID = "transaction_id"
PARTITION = "tx_date"


class FreshRowsMissing(MissingInput):
    """Transactions to serve have no row in gold.fresh_features."""


def build_command(first: date, last: date) -> str:
    days = f"--date {first}" if first == last else f"--from {first} --to {last}"
    return f"`cardscore run fresh_features {days}`"


def fresh_rows(lake: Lake, first: date, last: date, version: int | None = None, stage: str = "features") -> DataFrame:
    """`transaction_id` and every fresh feature of the transactions of [first, last] (their
    `tx_date`), at table `version` (None: the current one)."""
    from pyspark.sql import functions as F

    table = catalog.FRESH_FEATURES
    if not lake.exists(table):
        raise FreshRowsMissing(stage, f"the model reads fresh features and {table} does not exist at "
                                      f"{lake.uri(table)}; run {build_command(first, last)} first")
    rows = lake.read(table, version=version if version is not None else lake.version(table))
    return rows.where((F.col(PARTITION) >= F.lit(first)) & (F.col(PARTITION) <= F.lit(last))).select(
        TRANSACTION_ID, *FRESH_FEATURE_NAMES
    )


def require_fresh_rows(transactions: DataFrame, rows: DataFrame, first: date, last: date, stage: str) -> None:
    """`FreshRowsMissing` unless every transaction (a frame with `transaction_id`) has a row."""
    absent = transactions.select(TRANSACTION_ID).join(rows.select(TRANSACTION_ID), TRANSACTION_ID, "left_anti")
    missing = absent.count()
    if missing:
        raise FreshRowsMissing(
            stage, f"{missing} transaction(s) of {first}..{last} have no row in {catalog.FRESH_FEATURES} "
                   f"(the model reads fresh features); run {build_command(first, last)} first"
        )


def with_fresh_features(transactions: DataFrame, rows: DataFrame) -> DataFrame:
    """`transactions` with the fresh feature columns of their rows (gold.fresh_features rows,
    joined on transaction_id; a transaction without one gets nulls: see `require_fresh_rows`)."""
    return transactions.join(rows.select(TRANSACTION_ID, *FRESH_FEATURE_NAMES), TRANSACTION_ID, "left")
