"""The fresh_features stage (jobs/fresh_features) on the embedded engine: the day's rows from
silver transactions and every label report equal the README oracle over the whole history,
exactly, and a day re-run replaces only itself."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from cardscore.core import catalog
from cardscore.core.config import Settings
from cardscore.core.stage import job_context
from cardscore.expectations.gate import GateFailed, load_suite_json
from cardscore.features.fresh import FRESH_FEATURE_NAMES
from cardscore.jobs.fresh_features.stage import SUITE, fresh_features_day, fresh_features_range
from cardscore.jobs.fresh_features.transforms import OUTPUT_COLUMNS
from cardscore.schemas.contracts import SILVER_LABEL_REPORT, SILVER_TRANSACTION
from tests.features.fresh_oracle import oracle
from tests.features.worlds import silver_labels, silver_transactions, small_world

DAY = date(2018, 5, 8)  # day 38 of the world: a full 30-day look-back behind it


def _us(times: pd.Series) -> np.ndarray:
    return pd.to_datetime(times, utc=True).dt.as_unit("us").astype("int64").to_numpy()


def test_the_days_rows_equal_the_oracle_and_a_rerun_replaces_only_the_day(spark, settings: Settings) -> None:
    world = small_world(seed=5, n_days=45, late_labels=True)
    tx = world.transactions[["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]]
    labels = world.labels[["transaction_id", "is_fraud", "reported_time", "fraud_scenario"]]
    # Every report, as silver.label_reports keeps them: a later repeat of every other fraud
    # (the earliest must count) and a genuine verdict after it (a retraction from then on).
    again = labels.iloc[::2].assign(reported_time=lambda f: f["reported_time"] + pd.Timedelta(days=2))
    genuine = labels.iloc[1::4].assign(reported_time=lambda f: f["reported_time"] + pd.Timedelta(days=1),
                                       is_fraud=False)
    reports = pd.concat([labels, again, genuine], ignore_index=True)
    ctx = job_context(settings, spark)
    lake = ctx.lake
    lake.overwrite(spark.createDataFrame(silver_transactions(tx), SILVER_TRANSACTION.spark_schema()),
                   catalog.SILVER_TRANSACTIONS, partition_by=SILVER_TRANSACTION.partition_by)
    lake.overwrite(spark.createDataFrame(silver_labels(reports), SILVER_LABEL_REPORT.spark_schema()),
                   catalog.SILVER_LABEL_REPORTS, partition_by=SILVER_LABEL_REPORT.partition_by)

    report = fresh_features_day(ctx, DAY)

    table = lake.read(catalog.FRESH_FEATURES)
    assert table.columns == list(OUTPUT_COLUMNS)
    got = table.toPandas().set_index("transaction_id").sort_index()
    day_ids = tx.loc[pd.to_datetime(tx["event_time"], utc=True).dt.date == DAY, "transaction_id"]
    assert report.rows == len(got) == len(day_ids) > 50
    assert sorted(got.index) == sorted(day_ids)
    history = pd.DataFrame({**{c: tx[c].to_numpy() for c in ("transaction_id", "customer_id", "terminal_id",
                                                               "amount")}, "us": _us(tx["event_time"])})
    label_frame = pd.DataFrame({"transaction_id": reports["transaction_id"].to_numpy(),
                                "is_fraud": reports["is_fraud"].to_numpy(), "reported_us": _us(reports["reported_time"])})
    expected = oracle(history, label_frame).set_index("transaction_id").loc[got.index]
    for name in FRESH_FEATURE_NAMES:
        assert got[name].tolist() == expected[name].tolist(), name  # exact, no tolerance
    # The published day passed its gate: the suite's column list is the table's.
    suite = load_suite_json(SUITE)
    listed = next(e["kwargs"]["column_list"] for e in suite["expectations"]
                  if e["type"] == "expect_table_columns_to_match_ordered_list")
    assert listed == list(OUTPUT_COLUMNS)
    # The day is not a trivial one: frauds were reported on its cards and terminals.
    assert (got["card_nb_frauds_reported_30d"] > 0).any()
    assert (got["terminal_nb_frauds_reported_28d"] > 0).any()

    before = table.toPandas().sort_values("transaction_id").reset_index(drop=True)
    fresh_features_day(ctx, DAY + timedelta(days=1))
    rerun = fresh_features_day(ctx, DAY)
    assert rerun.rows == report.rows
    days = {r.tx_date: r["count"] for r in lake.read(catalog.FRESH_FEATURES).groupBy("tx_date").count().collect()}
    assert set(days) == {DAY, DAY + timedelta(days=1)} and days[DAY] == report.rows
    after = lake.read(catalog.FRESH_FEATURES).where(F.col("tx_date") == F.lit(DAY.isoformat()).cast("date"))
    pd.testing.assert_frame_equal(after.toPandas().sort_values("transaction_id").reset_index(drop=True), before)

    # A backfill computes several days per pass (here 2): the same rows as the day-by-day runs.
    day_by_day = lake.read(catalog.FRESH_FEATURES).toPandas()
    chunked = settings.model_copy(update={"features": settings.features.model_copy(update={"backfill_chunk_days": 2})})
    days_done: list[tuple[int, int]] = []
    backfill = fresh_features_range(job_context(chunked, spark), DAY - timedelta(days=1), DAY + timedelta(days=1),
                                    progress=lambda done, total: days_done.append((done, total)))
    assert [r.day for r in backfill] == [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)]
    assert [r.pass_days for r in backfill] == [2, 2, 1] and days_done == [(2, 3), (3, 3)]
    assert all(r.rows > 0 for r in backfill)
    table = lake.read(catalog.FRESH_FEATURES).toPandas()
    assert len(table) == sum(r.rows for r in backfill) == table["transaction_id"].nunique()
    again = table[table["tx_date"] != DAY - timedelta(days=1)].sort_values("transaction_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(again, day_by_day.sort_values("transaction_id").reset_index(drop=True))


def test_a_day_whose_rows_fail_the_gate_is_not_published(spark, settings: Settings) -> None:
    """A silver transaction id twice (silver's key broken): the rows are not one per id, the
    gate fails, and nothing of the day is published."""
    world = small_world(seed=6, n_days=3, late_labels=False)
    tx = world.transactions[["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]]
    day = pd.to_datetime(tx["event_time"], utc=True).dt.date.iloc[-1]
    doubled = pd.concat([tx, tx.iloc[-1:]], ignore_index=True)
    ctx = job_context(settings, spark)
    ctx.lake.overwrite(spark.createDataFrame(silver_transactions(doubled), SILVER_TRANSACTION.spark_schema()),
                       catalog.SILVER_TRANSACTIONS, partition_by=SILVER_TRANSACTION.partition_by)
    with pytest.raises(GateFailed, match="transaction_id"):
        fresh_features_day(ctx, day)
    assert not ctx.lake.exists(catalog.FRESH_FEATURES)
