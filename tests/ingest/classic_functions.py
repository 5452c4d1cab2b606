"""Functions run on classic JVM Spark by `tests.support.classic.run_on_classic`."""

from __future__ import annotations

from typing import Any


def validate_corpus(spark: Any, lines: Any, contract_name: str, validators: tuple[str, ...] = ("sql", "python")) -> Any:
    """The corpus checked by both validators (one JVM start for both)."""
    from pyspark.sql import functions as F

    from schemas.contracts import ALL_CONTRACTS
    from schemas.spark_validation import validate_lines

    contract = ALL_CONTRACTS[contract_name]
    results = [
        validate_lines(lines, contract, validator=validator)
        .select("line_number", "reason", "decided_by")
        .withColumn("validator", F.lit(validator))
        for validator in validators
    ]
    out = results[0]
    for more in results[1:]:
        out = out.unionByName(more)
    return out
