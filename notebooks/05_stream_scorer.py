# Databricks notebook source
# MAGIC %md
# MAGIC # 05 · Watch the stream scorer
# MAGIC
# MAGIC Runs the Kafka stream scorer (`streaming/`) in this process while a simulated day is
# MAGIC replayed onto the transactions topic (`cardscore.simulator.kafka`), plus a few broken
# MAGIC messages that must land on the DLQ; waits until every message is accounted for (no
# MAGIC sleeps: it polls the scorer's counters with a deadline); then shows throughput, latency
# MAGIC (broker time of the score minus broker time of the transaction), the DLQ reasons, and
# MAGIC checks that the stream scored every transaction exactly as the batch scorer did for the same
# MAGIC day (notebook 04): same model version, same features (online store vs point-in-time), same
# MAGIC scores.
# MAGIC
# MAGIC Locally (`kafka.mode: embedded`) the notebook starts its own Kafka-compatible broker on a
# MAGIC free port and stops it at the end; on Databricks `kafka.client` in the settings file names
# MAGIC the cluster (secrets through `${env:...}`).
# MAGIC
# MAGIC **Run it** after `04_batch_score` (same day), on Databricks or locally:
# MAGIC `CARDSCORE_NB_CONFIG=notebooks/small_world.yaml python notebooks/05_stream_scorer.py`

# COMMAND ----------

# ruff: noqa: E402 (each cell imports what it uses, as notebooks do)
import atexit

from cardscore import notebook as nb
from cardscore.core import registry
from cardscore.services.broker import EmbeddedBroker

settings = nb.settings()
_, last_world_day = nb.world_days(settings)
DAY = nb.day_param("day", last_world_day)  # the day to replay (batch-scored by notebook 04)
RATE = nb.int_param("rate", 0)  # replay pace in messages/s; 0 = as fast as possible
TIMEOUT = nb.int_param("timeout_seconds", 300)  # give up waiting for the scorer after this
METRICS_PORT = nb.int_param("metrics_port", 0)  # the scorer's Prometheus port; 0 = off

# The scorer waits for a champion; a notebook should say at once that there is none.
champion = registry.resolve_alias(settings, settings.streaming.model_alias)
print(f"scoring with {champion.name} v{champion.version} ({settings.streaming.model_alias})")

broker = None
overrides = {"streaming": {"metrics_port": METRICS_PORT}}
if settings.kafka.mode == "embedded":
    broker = EmbeddedBroker(log_file=settings.home_path / "broker.log").start()
    atexit.register(broker.stop)  # also stopped in the last cell; this covers a failed cell
    overrides["kafka"] = {"client": {"bootstrap.servers": broker.bootstrap}}
settings = nb.settings(overrides)
print(f"replay {DAY} to {settings.kafka_bootstrap} topic {settings.kafka.topics.transactions}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The online store serves the day
# MAGIC The stream reads a transaction's features from its own day's snapshot: load it before the
# MAGIC day is replayed (idempotent).

# COMMAND ----------

from cardscore.features.store import materialize

ctx = nb.job_context(settings)
nb.display(materialize(settings, ctx.spark, DAY).to_dict(), "online store")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Stream the day
# MAGIC A scorer thread consumes; once it has handled the broken messages (it is up: partitions
# MAGIC assigned, champion and feature store loaded) the day is replayed; the cell returns when
# MAGIC every message is scored or on the DLQ, then stops the scorer cleanly (offsets committed).

# COMMAND ----------

from cardscore import demo

with nb.progress_bars() as progress:
    stream = demo.stream_day(settings, DAY, RATE or None, progress, timeout=TIMEOUT)
nb.display({
    "replayed": stream.replayed, "scored": stream.scored, "to the DLQ": stream.dlq,
    "DLQ reasons": stream.dlq_reasons, "model versions": stream.model_versions,
    "scores per second": round(stream.events_per_s, 1),
    "latency p50 ms": stream.latency_p50_ms, "latency p99 ms": stream.latency_p99_ms,
    "seconds": round(stream.seconds, 2),
}, f"stream {DAY}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Stream == batch
# MAGIC The same transactions, scored by two paths that share one feature definition and one model
# MAGIC version: every score must match (|difference| < 1e-6).

# COMMAND ----------

from pyspark.sql import functions as F

skew = demo.stream_equals_batch(settings, stream)
nb.display({**skew.__dict__, "equal": skew.equal}, "stream vs batch")
batch = {int(r.transaction_id): float(r.score) for r in ctx.lake.read(settings.scoring.output_table)
         .where(F.col("tx_date") == F.lit(DAY)).select("transaction_id", "score").collect()}
nb.display(nb.plot_stream_vs_batch(stream.scores, batch, f"{DAY}: {skew.compared} transactions"), "stream_vs_batch")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Stop
# MAGIC The scorer already stopped; the notebook's own broker (local runs) goes too.

# COMMAND ----------

if broker is not None:
    broker.stop()
    atexit.unregister(broker.stop)
    print("embedded broker stopped")
