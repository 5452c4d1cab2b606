"""The feature transformations give the same rows on embedded Sail and on classic local Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cardscore.features.definitions import CUSTOMER_FEATURES, TERMINAL_FEATURES
from tests.features.parity import all_features
from tests.features.worlds import silver_labels, silver_transactions, small_world
from tests.support.classic import run_on_classic

FIRST, LAST = "2018-04-01", "2018-05-25"


@pytest.mark.classic
def test_same_features_on_sail_and_classic_spark(spark, tmp_path: Path) -> None:
    world = small_world(seed=9, n_days=50, late_labels=True)
    inputs = {"transactions": tmp_path / "tx.parquet", "labels": tmp_path / "labels.parquet"}
    silver_transactions(world.transactions).to_parquet(inputs["transactions"], coerce_timestamps="us", index=False)
    silver_labels(world.labels).to_parquet(inputs["labels"], coerce_timestamps="us", index=False)

    frames = {name: spark.read.parquet(str(path)) for name, path in inputs.items()}
    sail = all_features(spark, **frames, first=FIRST, last=LAST).toPandas()
    # One JVM start for every classic check of this area.
    classic = run_on_classic("tests.features.parity:all_features", inputs, tmp_path / "classic.parquet",
                             {"first": FIRST, "last": LAST})

    for kind, key, features in (("customer", ["customer_id", "snapshot_date"], CUSTOMER_FEATURES),
                                ("terminal", ["terminal_id", "snapshot_date"], TERMINAL_FEATURES),
                                ("request", ["transaction_id"], ("tx_during_weekend", "tx_during_night"))):
        left = sail[sail["kind"] == kind].sort_values(key).reset_index(drop=True)
        right = classic[classic["kind"] == kind].sort_values(key).reset_index(drop=True)
        assert len(left) == len(right) > 100, kind
        pd.testing.assert_frame_equal(left[key], right[key], check_dtype=False)
        for name in features:
            if "_nb_tx_" in name or name.startswith("tx_"):
                np.testing.assert_array_equal(left[name].to_numpy(), right[name].to_numpy(), err_msg=name)
            else:  # sums may differ in the last bits between engines (STACK.md)
                np.testing.assert_allclose(left[name], right[name], rtol=1e-12, err_msg=name)
        if kind != "request":
            stamps = [pd.to_datetime(f["event_timestamp"]).dt.tz_localize(None) if pd.to_datetime(f["event_timestamp"]).dt.tz is not None
                      else pd.to_datetime(f["event_timestamp"]) for f in (left, right)]
            assert (stamps[0] == stamps[1]).all(), kind
