# Databricks notebook source
# MAGIC %md
# MAGIC # 02 · Build features
# MAGIC
# MAGIC Builds the daily feature snapshots from silver into the gold Delta tables
# MAGIC (`gold.customer_features`, `gold.terminal_features`: the handbook's customer spending and
# MAGIC terminal risk windows, `features/README.md`), each pass gated by Great Expectations; loads
# MAGIC one day into the Feast online store (what the stream scorer reads); shows a snapshot, the
# MAGIC features over days, the Feast objects and an online lookup.
# MAGIC
# MAGIC The snapshot of day D describes the data strictly *before* D, so the range defaults to the
# MAGIC world's second day through its last day (the snapshot the last day is scored with).
# MAGIC
# MAGIC **Run it** after `01_explore_data`, on Databricks or locally:
# MAGIC `CARDSCORE_NB_CONFIG=notebooks/small_world.yaml python notebooks/02_build_features.py`

# COMMAND ----------

# ruff: noqa: E402 (each cell imports what it uses, as notebooks do)
from datetime import timedelta

from cardscore import notebook as nb

settings = nb.settings()
first_world_day, last_world_day = nb.world_days(settings)
FIRST_DAY = nb.day_param("first_day", first_world_day + timedelta(days=1))  # first snapshot day
LAST_DAY = nb.day_param("last_day", last_world_day)  # last snapshot day
ONLINE_DAY = nb.day_param("online_day", LAST_DAY)  # the day the online store serves
print(f"snapshots {FIRST_DAY} .. {LAST_DAY}; online store serves {ONLINE_DAY}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Build the snapshots
# MAGIC One pass per `features.backfill_chunk_days` days; a rerun replaces the same days with the
# MAGIC same rows (replaceWhere), never duplicates them.

# COMMAND ----------

import pandas as pd

from cardscore.jobs.build_features.stage import SPEC as FEATURES

ctx = nb.job_context(settings)
days = [FIRST_DAY + timedelta(days=i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]
reports = nb.run_stage(FEATURES, ctx, days)
nb.display(pd.DataFrame([r.to_dict() for r in reports]).set_index("day"), "snapshot days", rows=len(reports))

# COMMAND ----------

# MAGIC %md
# MAGIC ## The features over days
# MAGIC Active customers and terminals per day and the daily mean of every feature: a sudden jump
# MAGIC is a pipeline problem (a missing day, a late label feed) or a real shift worth a look.

# COMMAND ----------

from cardscore.features.report import daily_summary, plot_daily_summary

summary = daily_summary(ctx.lake, FIRST_DAY, LAST_DAY)
nb.display(plot_daily_summary(summary, nb.pictures_dir(settings) / "features_over_days.png"), "features over days")

# COMMAND ----------

# MAGIC %md
# MAGIC ## One snapshot
# MAGIC The rows the last day is scored with (customers, then terminals).

# COMMAND ----------

from pyspark.sql import functions as F

from cardscore.core import catalog
from cardscore.features.definitions import SNAPSHOT_DATE

for table in (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES):
    snapshot = ctx.lake.read(table).where(F.col(SNAPSHOT_DATE) == F.lit(LAST_DAY))
    print(f"{table} on {LAST_DAY}: {snapshot.count()} rows")
    nb.display(snapshot.orderBy(snapshot.columns[0]), f"{table} {LAST_DAY}", rows=10)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Feast: registry and online store
# MAGIC The entities, the Delta-backed feature views, the request-time on-demand view and the
# MAGIC model's FeatureService; then the online store is loaded with `ONLINE_DAY`'s snapshot.

# COMMAND ----------

from cardscore.features.store import feast_objects, materialize

objects = feast_objects(settings)
nb.display(pd.DataFrame(
    [("entity", e.name, e.join_key) for e in objects.entities]
    + [("feature view", v.name, f"{len(v.features)} features, TTL {v.ttl}") for v in objects.views]
    + [("on-demand view", objects.request_view.name, "request-time flags (python mode)"),
       ("feature service", objects.service.name, "the model's features")],
    columns=["kind", "name", "detail"],
), f"Feast project {settings.feast.project}")

online = materialize(settings, ctx.spark, ONLINE_DAY)
nb.display(online.to_dict(), "online store")

# COMMAND ----------

# MAGIC %md
# MAGIC ## An online lookup
# MAGIC The stream scorer's view: model features for a few of `ONLINE_DAY`'s transactions, from
# MAGIC the online store, with one call (`features.online.lookup`).

# COMMAND ----------

from cardscore.features.online import lookup
from cardscore.features.store import feature_store

sample = [
    row.asDict()
    for row in ctx.lake.read(catalog.SILVER_TRANSACTIONS)
    .where(F.col("tx_date") == F.lit(ONLINE_DAY))
    .select("transaction_id", "customer_id", "terminal_id", "amount", "event_time")
    .orderBy("transaction_id")
    .limit(5)
    .collect()
]
found = lookup(feature_store(settings), sample)
online_features = found.features.assign(
    transaction_id=[r["transaction_id"] for r in sample],
    customer_known=found.customer_known,
    terminal_known=found.terminal_known,
).set_index("transaction_id")
nb.display(online_features, f"online features on {ONLINE_DAY}")
