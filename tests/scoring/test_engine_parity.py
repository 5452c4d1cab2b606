"""The scorer's transformations (equi-join on the day's snapshot, generated request-time flags,
scoring, records) give the same predictions on embedded Sail and on classic local Spark (JVM,
no Delta: inputs and outputs are Parquet)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from cardscore.core import catalog
from cardscore.model.scoring import booster_bytes
from tests.scoring import parity, world
from tests.support.classic import run_on_classic


@pytest.mark.classic
def test_same_predictions_on_sail_and_classic_spark(spark, scoring_world, tmp_path: Path) -> None:
    from cardscore.core.lake import Lake

    settings = scoring_world.settings
    lake = Lake(spark, settings)
    day = world.DAY
    inputs = {
        "transactions": lake.read(catalog.SILVER_TRANSACTIONS).where(F.col("tx_date") == F.lit(day)),
        "customer_rows": lake.read(catalog.CUSTOMER_FEATURES).where(F.col("snapshot_date") == F.lit(day)),
        "terminal_rows": lake.read(catalog.TERMINAL_FEATURES).where(F.col("snapshot_date") == F.lit(day)),
    }
    # Both engines join, compute the flags and score from the same silver and gold rows.
    paths = {}
    for name, df in inputs.items():
        paths[name] = tmp_path / name
        df.write.mode("overwrite").parquet(paths[name].as_uri())
    model = tmp_path / "model.ubj"
    model.write_bytes(booster_bytes(scoring_world.booster))
    kwargs = {"model_path": str(model), "day": day.isoformat(), "version": scoring_world.version}

    frames = {name: spark.read.parquet(path.as_uri()) for name, path in paths.items()}
    on_sail = parity.predictions(spark, **frames, **kwargs).toPandas()
    on_classic = run_on_classic("tests.scoring.parity:predictions", paths, tmp_path / "classic.parquet", kwargs)

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.sort_values("transaction_id").reset_index(drop=True)
        for column in ("event_time", "scored_at"):
            out[column] = pd.to_datetime(out[column]).dt.tz_localize(None).astype("datetime64[us]")
        out["feature_snapshot_date"] = out["feature_snapshot_date"].map(lambda d: None if pd.isna(d) else str(d))
        out["tx_date"] = out["tx_date"].astype(str)
        return out

    sail, classic = tidy(on_sail), tidy(on_classic)
    assert len(sail) == len(world.silver_day(scoring_world.transactions, day))
    assert list(classic.columns) == list(sail.columns)
    pd.testing.assert_frame_equal(sail, classic, check_dtype=False, rtol=0, atol=0)
    assert sail["unknown_customer"].any() and sail["unknown_terminal"].any()
