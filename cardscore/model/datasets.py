"""From split rows to model inputs: the entity frame for the feature store, and back.

The feature store's point-in-time retrieval takes one entity row per transaction
(`transaction_id, customer_id, terminal_id, event_timestamp, tx_amount`) and returns the
same rows with every model feature; `attach_features` joins them onto the labelled rows and
refuses to lose any. `model_matrix` is the one place features become the float64 matrix the
booster sees, in training and in both scorers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ENTITY_COLUMNS = ("transaction_id", "customer_id", "terminal_id", "event_timestamp", "tx_amount")


class FeatureGap(ValueError):
    """Some transactions came back from the feature store without their features."""


def entity_frame(*frames: pd.DataFrame) -> pd.DataFrame:
    """One entity row per distinct transaction of the frames (silver column names in)."""
    parts = [f[["transaction_id", "customer_id", "terminal_id", "event_time", "amount"]] for f in frames]
    rows = pd.concat(parts, ignore_index=True).drop_duplicates("transaction_id")
    rows = rows.rename(columns={"event_time": "event_timestamp", "amount": "tx_amount"})
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    return rows.sort_values("transaction_id", kind="mergesort").reset_index(drop=True)[list(ENTITY_COLUMNS)]


def attach_features(
    frame: pd.DataFrame, features: pd.DataFrame, feature_names: Sequence[str]
) -> pd.DataFrame:
    """`frame` with the feature columns (float64) joined on transaction_id; no row may be lost."""
    names = list(feature_names)
    missing_columns = [n for n in names if n not in features.columns]
    if missing_columns:
        raise FeatureGap(f"the feature store returned no column(s) {missing_columns}")
    values = features[["transaction_id", *names]].drop_duplicates("transaction_id")
    # tx_amount is both a silver column (amount) and a feature: take the feature's copy.
    kept = frame.drop(columns=[c for c in names if c in frame.columns])
    out = kept.merge(values, on="transaction_id", how="left", validate="one_to_one", indicator=True)
    absent = int((out["_merge"] != "both").sum())
    if absent:
        raise FeatureGap(
            f"{absent} of {len(frame)} transactions have no feature row (is the feature store "
            "built for every day of the protocol?)"
        )
    out = out.drop(columns="_merge")
    out[names] = out[names].astype("float64")
    return out


def model_matrix(frame: pd.DataFrame, feature_names: Sequence[str]) -> pd.DataFrame:
    """The features, in the model's order, as float64 (missing values stay NaN)."""
    names = list(feature_names)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise KeyError(f"missing model feature column(s) {missing}")
    return frame[names].astype(np.float64)
