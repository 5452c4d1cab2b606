"""Functions run on classic JVM Spark by `tests.support.classic.run_on_classic`."""

from __future__ import annotations

from datetime import date
from typing import Any


def classic_checks(spark: Any, corpus: Any, transactions: Any, labels: Any, day: str) -> Any:
    """One JVM start for everything: the corpus through the validator (SQL checks with the
    Python fallback, so both code paths run), then a day's classification of each feed.
    Rows: (kind, name, line_number, status, reason)."""
    from pyspark.sql import functions as F

    from cardscore.jobs.ingest.transforms import LABELS, TRANSACTIONS, classify
    from cardscore.schemas.spark_validation import validate_lines

    out = [
        validate_lines(corpus, TRANSACTIONS.event, validator=validator).select(
            F.lit("validate").alias("kind"), F.lit(validator).alias("name"), "line_number",
            F.lit(None).cast("string").alias("status"), "reason",
        )
        for validator in ("sql",)
    ]
    for feed, lines in ((TRANSACTIONS, transactions), (LABELS, labels)):
        classified = classify(validate_lines(lines, feed.event), feed, date.fromisoformat(day))
        out.append(classified.select(F.lit("classify").alias("kind"), F.lit(feed.name).alias("name"),
                                     "line_number", "status", "reason"))
    result = out[0]
    for more in out[1:]:
        result = result.unionByName(more)
    return result

