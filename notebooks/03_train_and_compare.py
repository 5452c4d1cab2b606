# Databricks notebook source
# MAGIC %md
# MAGIC # 03 · Train and compare with the handbook
# MAGIC
# MAGIC Trains the fraud model with the handbook's protocol (train days, a delay, test days, cards
# MAGIC already known to be compromised removed from the test days), with point-in-time features
# MAGIC from the Feast offline store; logs everything to MLflow, registers a version and runs the
# MAGIC validation gate (`jobs/train/main.py`, the same code as `cardscore train` and the retraining job).
# MAGIC Then compares it with the handbook's baselines, both as published and refitted on these very
# MAGIC sets, shows the plots the run logged, and promotes the version to `champion` if the gate
# MAGIC passed.
# MAGIC
# MAGIC `train_start=auto` keeps the configured windows when the world has the history for them,
# MAGIC and otherwise moves them to the end of a shorter world (as `cardscore demo` does).
# MAGIC
# MAGIC **Run it** after `02_build_features`, on Databricks or locally:
# MAGIC `CARDSCORE_NB_CONFIG=notebooks/small_world.yaml python notebooks/03_train_and_compare.py`

# COMMAND ----------

# ruff: noqa: E402 (each cell imports what it uses, as notebooks do)
from datetime import date

from cardscore import notebook as nb
from cardscore.demo import make_plan

settings = nb.settings()
TRAIN_START_TEXT = nb.param("train_start", "auto")  # YYYY-MM-DD, or auto
TRAIN_START = make_plan(settings).train_start if TRAIN_START_TEXT in ("", "auto") else date.fromisoformat(TRAIN_START_TEXT)
SEARCH = nb.flag_param("search", settings.training.search.enabled)  # prequential hyperparameter search first
BASELINES = nb.flag_param("baselines", True)  # refit the handbook's baselines on the same sets
PROMOTE = nb.flag_param("promote", True)  # move `champion` to the new version if it passed the gate
protocol = settings.training.protocol
print(f"train from {TRAIN_START}: {protocol.train_days} days, {protocol.delay_days}-day delay, "
      f"{protocol.test_days} test days; card precision@{protocol.top_k}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Train, log, register, gate
# MAGIC The sets are built once (silver → protocol split → Feast point-in-time join) so the
# MAGIC baselines below see exactly the model's training and test rows.

# COMMAND ----------

from cardscore.jobs.train.stage import GateRejected, TrainingParams, build_sets, train_on_sets

ctx = nb.job_context(settings)
with nb.progress_bars() as progress:
    params = TrainingParams(train_start=TRAIN_START, search=SEARCH, actor="notebook",
                            reason="notebooks/03_train_and_compare", progress=progress)
    sets = build_sets(ctx, params)
    try:
        report = train_on_sets(settings, sets, params)
    except GateRejected as rejected:  # logged and registered, but no alias moved
        report = rejected.report
nb.display({"run": report.run_id, "version": report.version, "protocol": report.protocol, "sizes": report.sizes},
           "training run")
print(report.gate.summary() if report.gate else "not registered: no gate")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Beside the handbook
# MAGIC The handbook's published test results (its own world, chapter 3.4) and, on our sets, its
# MAGIC baseline classifiers refitted (`cardscore.model.baselines`). On a small world the test
# MAGIC days hold few frauds, so expect wide swings.

# COMMAND ----------

import pandas as pd

from cardscore.model.baselines import fit_predict, handbook_baselines
from cardscore.model.card import HANDBOOK_TEST_RESULTS
from cardscore.model.evaluation import evaluate

k = report.test.k
rows = {f"{report.model_name} v{report.version}, train": report.train.metrics(),
        f"{report.model_name} v{report.version}, test": report.test.metrics()}
if BASELINES:
    for name, model in handbook_baselines(seed=0, n_jobs=settings.training.model.n_jobs).items():
        rows[f"{name} refitted, test"] = evaluate(sets.test, fit_predict(model, sets.train, sets.test,
                                                                          sets.feature_names), k).metrics()
rows.update({f"handbook {name}, published": metrics for name, metrics in HANDBOOK_TEST_RESULTS.items()})
comparison = pd.DataFrame.from_dict(rows, orient="index").rename(columns={
    "auc_roc": "AUC ROC", "average_precision": "average precision", "card_precision_at_k": f"card precision@{k}"})
nb.display(comparison.round(3), "metrics", rows=len(comparison))

# COMMAND ----------

# MAGIC %md
# MAGIC ## The run's plots (from MLflow)
# MAGIC ROC and precision-recall curves, feature importance, score distribution, card precision
# MAGIC per test day: the artifacts the training job logged, read back from the tracking server.

# COMMAND ----------

import mlflow

from cardscore.core import registry

registry.configure_mlflow(settings)
plots_dir = nb.pictures_dir(settings) / f"run-{report.run_id}"
plots_dir.mkdir(parents=True, exist_ok=True)
mlflow.artifacts.download_artifacts(run_id=report.run_id, artifact_path="plots", dst_path=str(plots_dir))
plots = sorted(p for p in plots_dir.rglob("*.png"))
for picture in plots:
    nb.display(picture, picture.stem)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Promote
# MAGIC Only a version that passed the gate becomes `champion` (the scorers follow the alias); the
# MAGIC previous champion stays one `cardscore rollback` away.

# COMMAND ----------

if PROMOTE and report.gate is not None and report.gate.passed and report.version:
    moved = registry.promote(settings, actor="notebook", reason="notebooks/03: gate passed", version=report.version)
    print(f"{moved.model_name} champion is now v{moved.version} (was v{moved.previous_version or '-'})")
else:
    print("not promoted: " + ("the gate rejected the version" if report.gate and not report.gate.passed
                              else "promotion off or nothing registered"))
versions = registry.list_versions(settings)
nb.display(pd.DataFrame([{"version": v.version, "aliases": ", ".join(v.aliases), "gate": v.gate, "created": v.created,
                          **{m: round(v.metrics[m], 3) for m in ("test_auc_roc", "test_average_precision",
                                                                 "test_card_precision_at_k") if m in v.metrics}}
                         for v in versions]), f"{settings.mlflow.model_name} versions")
