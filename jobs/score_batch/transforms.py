"""Pure transformations of the batch scorer: DataFrame in, DataFrame out; I/O is in
`jobs/score_batch/stage.py`.

    features = served_features(silver_day, customer_rows, terminal_rows)  # D's snapshot, equi-join
    scored = score_release_in_engine(features, plan.portable())           # the one Python pass
    records = prediction_records(scored, model_name, version, day, run_id, scored_at)

`served_features` serves every transaction of day D its entities' rows of D's snapshot by an
equi-join (`features.serving.day_features`), with the request-time flags as column
expressions generated from `features.request_time`: what Feast's point-in-time retrieval gives
for the same rows (`entity_frame` + `features.retrieval.historical_features_spark`, kept for
training sets and tested equal), without its as-of join and without a UDF pass of its own.

The rules are the stream scorer's, so both publish the same `score_event` fields for a
transaction (features/README.md, streaming/features.py):

* an entity is *unknown* on day D when it has no row in D's snapshot; its features are then
  the definitions' defaults (0.0), which the feature retrieval fills in;
* `feature_snapshot_date` is D when the customer or the terminal had a row on D, else null
  (every entity feature was a default);
* the score is the booster's float32 probability widened exactly to a double.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from cardscore.core.spark_types import ddl_type, plain_strings
from cardscore.features.definitions import (
    CUSTOMER_KEY,
    EVENT_TIMESTAMP,
    MODEL_FEATURES,
    TERMINAL_KEY,
    TX_AMOUNT,
)
from cardscore.model.scoring import load_booster_bytes, predict_matrix
from cardscore.schemas.contracts import PREDICTION_RECORD

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from cardscore.model.release import PortablePlan

TRANSACTION_ID = "transaction_id"
UNKNOWN_CUSTOMER = "unknown_customer"
UNKNOWN_TERMINAL = "unknown_terminal"
SCORE = "score"
# The entity columns that ride through the feature join and the scoring UDF untouched.
PASSTHROUGH = (TRANSACTION_ID, CUSTOMER_KEY, TERMINAL_KEY, UNKNOWN_CUSTOMER, UNKNOWN_TERMINAL)
# The event time crosses the UDF as epoch microseconds: pandas would read a timestamp in the
# session's time zone, and an integer cannot be shifted.
EVENT_TIME_US = "event_time_us"
_KNOWN = "__cardscore_known"


def served_features(
    transactions: DataFrame, customer_rows: DataFrame, terminal_rows: DataFrame, fresh_rows: DataFrame | None = None
) -> DataFrame:
    """Every silver transaction with its model features and unknown flags, ready for
    `score_in_engine`: the PASSTHROUGH columns, event_timestamp and MODEL_FEATURES (double),
    then the fresh features when `fresh_rows` (gold.fresh_features rows) are given.

    `customer_rows` / `terminal_rows` are gold snapshot rows (the scored day's: each
    transaction is matched with the rows of its own UTC day); an entity without a row is
    unknown and gets the definitions' defaults. Fresh features are per transaction, joined on
    its id (a transaction without a row gets nulls: the caller checks there is none).
    """
    from pyspark.sql import functions as F

    from cardscore.features.serving import CUSTOMER_IN_SNAPSHOT, TERMINAL_IN_SNAPSHOT, day_features

    entities = transactions.select(
        F.col(TRANSACTION_ID),
        F.col(CUSTOMER_KEY),
        F.col(TERMINAL_KEY),
        F.col("event_time").alias(EVENT_TIMESTAMP),
        F.col("amount").cast("double").alias(TX_AMOUNT),
    )
    served = day_features(entities, customer_rows, terminal_rows)
    fresh: list[str] = []
    if fresh_rows is not None:
        from cardscore.features.fresh import FRESH_FEATURE_NAMES
        from cardscore.features.fresh_serving import with_fresh_features

        fresh = list(FRESH_FEATURE_NAMES)
        served = with_fresh_features(served, fresh_rows)
    return served.select(
        TRANSACTION_ID,
        CUSTOMER_KEY,
        TERMINAL_KEY,
        (~F.col(CUSTOMER_IN_SNAPSHOT)).alias(UNKNOWN_CUSTOMER),
        (~F.col(TERMINAL_IN_SNAPSHOT)).alias(UNKNOWN_TERMINAL),
        EVENT_TIMESTAMP,
        *MODEL_FEATURES,
        *fresh,
    )


def entity_frame(transactions: DataFrame, customer_keys: DataFrame, terminal_keys: DataFrame) -> DataFrame:
    """One Feast entity row per silver transaction, with the unknown flags (the input of Feast's
    point-in-time retrieval, `historical_features_spark`; the scorer uses `served_features`).

    `transactions` has silver columns (transaction_id, event_time, customer_id, terminal_id,
    amount); `customer_keys` / `terminal_keys` hold the ids that have a row in the day's
    snapshot (one column each, duplicates allowed).
    """
    from pyspark.sql import functions as F

    def known(keys: DataFrame, key: str) -> DataFrame:
        return keys.select(key).distinct().withColumn(_KNOWN + key, F.lit(True))

    joined = transactions.join(known(customer_keys, CUSTOMER_KEY), CUSTOMER_KEY, "left").join(
        known(terminal_keys, TERMINAL_KEY), TERMINAL_KEY, "left"
    )
    return joined.select(
        F.col(TRANSACTION_ID),
        F.col(CUSTOMER_KEY),
        F.col(TERMINAL_KEY),
        F.col("event_time").alias(EVENT_TIMESTAMP),
        F.col("amount").cast("double").alias(TX_AMOUNT),
        F.col(_KNOWN + CUSTOMER_KEY).isNull().alias(UNKNOWN_CUSTOMER),
        F.col(_KNOWN + TERMINAL_KEY).isNull().alias(UNKNOWN_TERMINAL),
    )


def _staged(features: DataFrame, layout: Sequence[str] = MODEL_FEATURES) -> tuple[DataFrame, list[str]]:
    """The scoring pass's input: the PASSTHROUGH columns, event_time_us and the `layout`
    features as doubles (the plan's matrix columns); and the names of the columns the pass keeps."""
    from pyspark.sql import functions as F

    staged = features.select(
        *PASSTHROUGH,
        F.unix_micros(F.col(EVENT_TIMESTAMP)).alias(EVENT_TIME_US),
        *[F.col(name).cast("double").alias(name) for name in layout],
    )
    return staged, [*PASSTHROUGH, EVENT_TIME_US]


def feature_matrix(batch: pa.RecordBatch, layout: Sequence[str] = MODEL_FEATURES) -> np.ndarray:
    """A (rows x layout) float64 matrix from an Arrow batch of `_staged` columns; a null
    feature is NaN (XGBoost's missing value), as pandas made it before."""
    return np.column_stack(
        [batch.column(name).to_numpy(zero_copy_only=False) for name in layout]
    ).astype(np.float64, copy=False)


def score_in_engine(features: DataFrame, model: bytes, threads: int = 0) -> DataFrame:
    """Score every row in the engine (one mapInArrow pass): the PASSTHROUGH columns,
    event_time_us and `score` (double). The booster is rebuilt from `model` once per task,
    never per batch. Arrow batches, not pandas: the kept columns go back as the same Arrow
    arrays (no conversion), and the matrix is built from the feature arrays directly (the
    pandas round trip cost more than the booster on a million rows: bench/batch_score.py)."""
    from pyspark.sql import types as T

    staged, kept = _staged(features)
    schema = T.StructType(
        [*(f for f in staged.schema.fields if f.name in kept), T.StructField(SCORE, T.DoubleType(), False)]
    )

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        booster = None  # built on the first batch: a task without rows never loads it
        for batch in batches:
            if booster is None:
                booster = load_booster_bytes(model, threads)
            score = predict_matrix(booster, feature_matrix(batch))
            yield pa.RecordBatch.from_arrays([*(batch.column(name) for name in kept), pa.array(score)],
                                             names=schema.fieldNames())

    # plain_strings: see cardscore.core.spark_types (Spark Connect collated strings)
    return staged.mapInArrow(score_batches, schema).transform(plain_strings)


# The release columns `score_release_in_engine` adds (prediction_record v2's release fields,
# plus the served model per row).
ARM = "arm"
FALLBACK = "fallback"
SHADOW_SCORE = "shadow_score"
SHADOW_VERSION = "shadow_model_version"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"


def score_release_in_engine(features: DataFrame, plan: PortablePlan, threads: int = 0) -> DataFrame:
    """`score_in_engine` for a release: every row scored by the plan
    (`cardscore.model.release.ServingPlan.score`: the card's arm, the canary, the shadow, or the
    fallback rules when frozen), in the same one Python pass. Output: the PASSTHROUGH columns,
    event_time_us, score, arm, model_name, model_version, fallback, shadow_score,
    shadow_model_version. The plan's boosters are rebuilt once per task.

    The pass returns the text columns as codes into vocabularies known here (the arms, the
    plan's model names and versions), turned into text by literals in the engine: through
    Spark Connect on JVM Spark every string a Python UDF returns is `string collate
    UTF8_BINARY`, which no cast removes and delta-rs cannot read (tests/cluster)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from cardscore.model.fallback import FALLBACK_MODEL_NAME, FALLBACK_VERSION
    from cardscore.model.release import ARMS

    staged, kept = _staged(features, plan.layout)
    models = [m for m in (plan.champion, plan.canary, plan.shadow) if m is not None]
    vocabulary = {
        ARM: list(ARMS),
        MODEL_NAME: sorted({m[0] for m in models} | {FALLBACK_MODEL_NAME}),
        MODEL_VERSION: sorted({m[1] for m in models} | {FALLBACK_VERSION}),
    }
    vocabulary[SHADOW_VERSION] = vocabulary[MODEL_VERSION]
    codes = {name: f"__{name}_code" for name in vocabulary}
    schema = T.StructType([
        *(f for f in staged.schema.fields if f.name in kept),
        T.StructField(SCORE, T.DoubleType(), False),
        T.StructField(codes[ARM], T.IntegerType(), False),
        T.StructField(codes[MODEL_NAME], T.IntegerType(), False),
        T.StructField(codes[MODEL_VERSION], T.IntegerType(), False),
        T.StructField(FALLBACK, T.BooleanType(), False),
        T.StructField(SHADOW_SCORE, T.DoubleType(), True),
        T.StructField(codes[SHADOW_VERSION], T.IntegerType(), False),
    ])

    names = schema.fieldNames()  # the arrays below, in this order

    def encode(values: np.ndarray, index: dict[str, int]) -> pa.Array:
        """1-based vocabulary codes of a column of texts (None -> 0), per distinct value."""
        positions, uniques = pd.factorize(values, use_na_sentinel=True)
        lookup = np.array([index[str(u)] for u in uniques] + [0], dtype=np.int32)
        return pa.array(lookup[positions])  # position -1 (None) reads the trailing 0

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        index = {name: {text: i + 1 for i, text in enumerate(words)} for name, words in vocabulary.items()}
        serving = None  # built on the first batch: a task without rows never loads a model
        for batch in batches:
            if serving is None:
                serving = plan.plan(threads)
            scores = serving.score(feature_matrix(batch, plan.layout),
                                   batch.column(CUSTOMER_KEY).to_numpy(zero_copy_only=False).astype(np.int64))
            shadow = scores.shadow_score
            yield pa.RecordBatch.from_arrays(
                [
                    *(batch.column(name) for name in kept),
                    pa.array(scores.score, type=pa.float64()),
                    encode(scores.arm, index[ARM]),
                    encode(scores.model_name, index[MODEL_NAME]),
                    encode(scores.model_version, index[MODEL_VERSION]),
                    pa.array(scores.fallback, type=pa.bool_()),
                    pa.array(shadow, type=pa.float64(), mask=np.isnan(shadow)),
                    # 0: no shadow (a null int did not survive every engine's Arrow conversion)
                    encode(scores.shadow_model_version, index[SHADOW_VERSION]),
                ],
                names=names,
            )

    coded = staged.mapInArrow(score_batches, schema)

    def text(name: str) -> Column:  # 1-based code -> the vocabulary's literal; 0 -> null
        words = F.array(*[F.lit(word) for word in vocabulary[name]])
        return F.when(F.col(codes[name]) > 0, F.element_at(words, F.col(codes[name]))).alias(name)

    return coded.select(*kept, SCORE, text(ARM), text(MODEL_NAME), text(MODEL_VERSION), FALLBACK, SHADOW_SCORE,
                        text(SHADOW_VERSION))


def prediction_records(
    scored: DataFrame,
    model_name: str,
    model_version: str,
    day: date,
    run_id: str,
    scored_at: datetime,
) -> DataFrame:
    """The `PREDICTION_RECORD` columns, in contract order and types, from `score_in_engine`'s
    output for the transactions of `day` (or `score_release_in_engine`'s: then its per-row
    model, arm, fallback flag and shadow columns; `score_in_engine` rows are the champion arm
    of `model_name` `model_version`)."""
    from pyspark.sql import functions as F

    schema = {f.name: f.dataType for f in PREDICTION_RECORD.spark_schema().fields}
    released = ARM in scored.columns
    both_unknown = F.col(UNKNOWN_CUSTOMER) & F.col(UNKNOWN_TERMINAL)
    values = {
        TRANSACTION_ID: F.col(TRANSACTION_ID),
        CUSTOMER_KEY: F.col(CUSTOMER_KEY),
        TERMINAL_KEY: F.col(TERMINAL_KEY),
        "event_time": F.timestamp_micros(F.col(EVENT_TIME_US)),
        SCORE: F.col(SCORE),
        "model_name": F.col(MODEL_NAME) if released else F.lit(model_name),
        "model_version": F.col(MODEL_VERSION) if released else F.lit(model_version),
        "feature_snapshot_date": F.when(both_unknown, F.lit(None)).otherwise(F.lit(day)),
        UNKNOWN_CUSTOMER: F.col(UNKNOWN_CUSTOMER),
        UNKNOWN_TERMINAL: F.col(UNKNOWN_TERMINAL),
        "scored_at": F.lit(scored_at),
        ARM: F.col(ARM) if released else F.lit("champion"),
        FALLBACK: F.col(FALLBACK) if released else F.lit(False),
        SHADOW_VERSION: F.col(SHADOW_VERSION) if released else F.lit(None),
        SHADOW_SCORE: F.col(SHADOW_SCORE) if released else F.lit(None),
        # The batch scorer's fresh values are exact by construction: gold.fresh_features' row
        # of the transaction (joined by id for an audit), not repeated in every prediction.
        "fresh_features": F.lit(None),
        "fresh_card_as_of": F.lit(None),
        "fresh_terminal_as_of": F.lit(None),
        "run_id": F.lit(run_id),
        "tx_date": F.lit(day),
    }
    missing = [name for name in schema if name not in values]
    if missing:  # pragma: no cover - guards a contract change
        raise ImportError(f"prediction_records does not fill {missing} of {PREDICTION_RECORD.name}")
    # DDL text, not type objects: see cardscore.core.spark_types (Spark Connect collated strings)
    return scored.select(*[values[name].cast(ddl_type(schema[name])).alias(name) for name in schema])


def score_histogram(predictions: DataFrame, bins: int = 50) -> DataFrame:
    """Counts of predictions per (tx_date, score bin, whether an entity was unknown): the
    small table a picture of the score distribution needs (bin i covers [i/bins, (i+1)/bins))."""
    from pyspark.sql import functions as F

    bin_index = F.least(F.floor(F.col(SCORE) * bins).cast("int"), F.lit(bins - 1))
    return (
        predictions.select(
            F.col("tx_date"),
            bin_index.alias("bin"),
            (F.col(UNKNOWN_CUSTOMER) | F.col(UNKNOWN_TERMINAL)).alias("any_unknown"),
        )
        .groupBy("tx_date", "bin", "any_unknown")
        .count()
    )
