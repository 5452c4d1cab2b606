"""Reading the silver inputs: the date window, pinned Delta versions, no fraud_scenario."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from cardscore.core import catalog
from cardscore.core.errors import MissingInput
from cardscore.core.stage import job_context
from cardscore.jobs.train.stage import read_inputs
from cardscore.schemas.contracts import SILVER_LABEL, SILVER_TRANSACTION

LOADED = datetime(2018, 9, 1, tzinfo=UTC)


def tx_rows(days: range, ids_from: int = 0) -> list[tuple]:
    out = []
    for d in days:
        t = datetime(2018, 7, 20, 10, tzinfo=UTC) + timedelta(days=d)
        out.append((ids_from + d, t, 1, 2, 12.5, "f.jsonl", "load", LOADED, t.date()))
    return out


def label_rows(ids_and_times: list[tuple[int, datetime]]) -> list[tuple]:
    return [(i, True, t, 3, "l.jsonl", "load", LOADED, t.date()) for i, t in ids_and_times]


def test_read_inputs_window_versions_and_no_scenario(spark, lake, settings) -> None:
    ctx = job_context(settings, spark)
    with pytest.raises(MissingInput, match=r"silver\.transactions does not exist"):
        read_inputs(ctx, date(2018, 7, 20), date(2018, 7, 30))

    tx_schema, label_schema = SILVER_TRANSACTION.spark_schema(), SILVER_LABEL.spark_schema()
    lake.append(spark.createDataFrame(tx_rows(range(10)), tx_schema), catalog.SILVER_TRANSACTIONS, ["tx_date"])
    lake.append(
        spark.createDataFrame(
            label_rows([(2, datetime(2018, 7, 23, tzinfo=UTC)), (0, datetime(2018, 7, 19, tzinfo=UTC))]),
            label_schema,
        ),
        catalog.SILVER_LABELS, ["reported_date"],
    )
    inputs = read_inputs(ctx, date(2018, 7, 22), date(2018, 7, 25))
    assert list(inputs.transactions["transaction_id"]) == [2, 3, 4]
    assert str(inputs.transactions["event_time"].dt.tz) == "UTC"
    assert inputs.transactions["event_time"].iloc[0] == datetime(2018, 7, 22, 10, tzinfo=UTC)
    # labels reported before the window cannot concern it; fraud_scenario never leaves silver
    assert list(inputs.labels["transaction_id"]) == [2]
    assert "fraud_scenario" not in inputs.labels.columns
    assert inputs.tables[catalog.SILVER_TRANSACTIONS]["version"] == 0
    assert inputs.tables[catalog.SILVER_LABELS]["uri"] == lake.uri(catalog.SILVER_LABELS)

    # a later append is invisible when the versions read before are pinned (reruns)
    lake.append(spark.createDataFrame(tx_rows(range(2, 4), ids_from=100), tx_schema),
                catalog.SILVER_TRANSACTIONS, ["tx_date"])
    pinned = read_inputs(ctx, date(2018, 7, 22), date(2018, 7, 25),
                         {k: v["version"] for k, v in inputs.tables.items()})
    assert list(pinned.transactions["transaction_id"]) == [2, 3, 4]
    current = read_inputs(ctx, date(2018, 7, 22), date(2018, 7, 25))
    assert list(current.transactions["transaction_id"]) == [2, 3, 4, 102, 103]
    assert current.tables[catalog.SILVER_TRANSACTIONS]["version"] == 1
