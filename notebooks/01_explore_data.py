# Databricks notebook source
# MAGIC %md
# MAGIC # 01 · Explore the data
# MAGIC
# MAGIC Simulates a world into the landing zone if there is none (the Fraud Detection Handbook's
# MAGIC simulator), ingests its days into the Delta lake (landing → bronze → silver, bad lines to
# MAGIC the quarantine with a reason, every day gated by Great Expectations), then shows what
# MAGIC arrived: transactions, customers, terminals and confirmed frauds per day and per fraud
# MAGIC scenario, and the quarantine by reason.
# MAGIC
# MAGIC **Run it** on Databricks from the repository (the bundle installs the `cardscore` wheel; the
# MAGIC `config` widget names the workspace's settings file), or locally as plain Python against the
# MAGIC embedded engine:
# MAGIC
# MAGIC ```
# MAGIC CARDSCORE_NB_CONFIG=notebooks/small_world.yaml python notebooks/01_explore_data.py
# MAGIC ```
# MAGIC
# MAGIC Every parameter is a widget on Databricks and `CARDSCORE_NB_<NAME>` locally. Rerunning is
# MAGIC safe: the simulator and the ingest are idempotent.

# COMMAND ----------

# ruff: noqa: E402 (each cell imports what it uses, as notebooks do)
from cardscore import notebook as nb

settings = nb.settings()
first_world_day, last_world_day = nb.world_days(settings)
SIMULATE = nb.flag_param("simulate", True)  # simulate a world when the landing zone has none
BAD_FILE = nb.flag_param("bad_file", True)  # re-send a file with broken lines (simulated worlds only)
FIRST_DAY = nb.day_param("first_day", first_world_day)
LAST_DAY = nb.day_param("last_day", last_world_day)
print(f"home {settings.home_path}; landing {settings.landing_root}; days {FIRST_DAY} .. {LAST_DAY}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The world
# MAGIC A world already in the landing zone is kept as it is; otherwise one is generated from the
# MAGIC `simulator` settings (deterministic per seed).

# COMMAND ----------

from cardscore import demo
from cardscore.simulator import read_manifest

simulated = read_manifest(settings.landing_root) is not None
if not simulated and SIMULATE:
    with nb.progress_bars() as progress:
        world = demo.simulate(settings, progress)
    nb.display(world, "simulated world")
    simulated = True
manifest = read_manifest(settings.landing_root)
if manifest is not None:
    nb.display({"totals": manifest["totals"], "frauds per scenario": manifest["frauds_per_scenario"]},
               "landing zone")
if simulated and BAD_FILE:
    # An upstream re-send with truncated JSON, a negative amount, a missing time and a wrong
    # type, plus one good duplicate: the quarantine gets each broken line with its reason.
    lines = demo.add_bad_landing_file(settings, LAST_DAY)
    print(f"re-sent {lines} lines for {LAST_DAY} ({demo.BAD_LANDING_FILE})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Ingest
# MAGIC One day at a time, like the nightly pipeline: a day already loaded is skipped file by file,
# MAGIC so rerunning adds nothing.

# COMMAND ----------

from datetime import timedelta

from cardscore.jobs.ingest.report import summary_table
from cardscore.jobs.ingest.stage import SPEC as INGEST

ctx = nb.job_context(settings)
days = [FIRST_DAY + timedelta(days=i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]
reports = nb.run_stage(INGEST, ctx, days)
nb.display(summary_table(reports), "ingest")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Per day: volume, fraud rate, scenarios
# MAGIC Frauds are the labels known so far (chargebacks trail by up to a week), so the last days
# MAGIC look cleaner than they are. Scenario 1: amount above the threshold; 2: compromised
# MAGIC terminals (28 days); 3: compromised customers (14 days, some amounts ×5).

# COMMAND ----------

daily = nb.daily_fraud_summary(ctx.lake, FIRST_DAY, LAST_DAY)
nb.display(daily, "per day", rows=len(daily))
nb.display(nb.plot_daily_fraud(daily), "daily_fraud")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Quarantine
# MAGIC Rejected lines per day, feed and reason code (`schemas/reasons.py`). The raw text stays in
# MAGIC `quarantine.records` for repair and replay; it is not shown here.

# COMMAND ----------

quarantined = nb.quarantine_summary(ctx.lake)
if quarantined is None:
    print("nothing was ever quarantined")
else:
    nb.display(quarantined, "quarantine by reason", rows=200)
