# Databricks notebook source
# MAGIC %md
# MAGIC # 04 · Batch-score a day
# MAGIC
# MAGIC Scores one day of silver transactions with the registry's `champion` version, the way the
# MAGIC nightly pipeline does (`jobs/score_batch/main.py`): point-in-time features from the Feast store
# MAGIC (the same retrieval training uses), XGBoost inside the engine, the predictions gated by
# MAGIC Great Expectations, then the day replaced in `gold.predictions` (a rerun gives the same rows).
# MAGIC Shows the run, the top-scored transactions with the labels known so far, and the score
# MAGIC distribution.
# MAGIC
# MAGIC **Run it** after `03_train_and_compare` (a champion must exist), on Databricks or locally:
# MAGIC `CARDSCORE_NB_CONFIG=notebooks/small_world.yaml python notebooks/04_batch_score.py`

# COMMAND ----------

# ruff: noqa: E402 (each cell imports what it uses, as notebooks do)
from cardscore import notebook as nb

settings = nb.settings()
_, last_world_day = nb.world_days(settings)
DAY = nb.day_param("day", last_world_day)  # the day to score (its snapshot must be built: notebook 02)
TOP = nb.int_param("top", 20)  # how many of the highest scores to list
print(f"score {DAY} with {settings.mlflow.model_name}@{settings.scoring.model_alias} into {settings.scoring.output_table}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Score, gate, publish

# COMMAND ----------

from cardscore.jobs.score_batch.stage import SPEC as SCORE

ctx = nb.job_context(settings)
report = nb.run_stage(SCORE, ctx, [DAY])[0]
nb.display({k: v for k, v in report.to_dict().items() if k != "gate"}, "scoring run")
print(report.gate)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The highest scores
# MAGIC With the fraud labels known so far (chargebacks trail by up to a week, so recent frauds may
# MAGIC not be labelled yet). Investigators check about `top_k` cards a day from the top of this list.

# COMMAND ----------

from pyspark.sql import functions as F

from cardscore.core import catalog

predictions = ctx.lake.read(settings.scoring.output_table).where(F.col("tx_date") == F.lit(DAY))
labels = ctx.lake.read(catalog.SILVER_LABELS).select("transaction_id", F.col("is_fraud").alias("labelled_fraud"))
top = (predictions.join(labels, on="transaction_id", how="left")
       .select("transaction_id", "customer_id", "terminal_id", "event_time", "score", "model_version",
               "unknown_customer", "unknown_terminal", "labelled_fraud")
       .orderBy(F.col("score").desc(), "transaction_id"))
nb.display(top, f"top {TOP} scores on {DAY}", rows=TOP)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Score distribution
# MAGIC Aggregated in the engine (a histogram of 50 bins), so only a few rows reach the driver.

# COMMAND ----------

from cardscore.jobs.score_batch.transforms import score_histogram

counts = score_histogram(predictions).toPandas()
nb.display(nb.plot_score_histogram(
    counts, f"{DAY}: {report.rows} transactions scored by {report.model_name} v{report.model_version}"),
    "score_distribution")
