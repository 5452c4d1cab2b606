"""`cardscore train` and the whole nightly of one day on three engines give the same tables:
(a) embedded Sail, (b) the standalone cluster through spark-submit with the Delta jars, (c) the
JVM Spark Connect server (its nightly; its model is trained on Sail, see
tests/cluster/commands.connect_steps). Every engine starts from a copy of the same base lake.

What may differ, and is left out of the comparison: when and by which run a row was written
(load ids, ingest, creation, scoring and computation times, run ids) and the landing file's
folder, which is each engine's own home. Everything computed is compared exactly: counts,
keys, labels, feature values (the rolling sums are decimals and their means come out bitwise
equal; STACK.md's 13th-digit drift between Sail and JVM rolling means does not appear with this
feature code), model metrics and scores (the same training sets give the same XGBoost model).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from cardscore.core import catalog
from cardscore.services.spark_cluster import master_json
from tests.cluster import world
from tests.cluster.commands import CLUSTER_TIMEOUT

pytestmark = [pytest.mark.classic, pytest.mark.timeout(CLUSTER_TIMEOUT)]

# Run metadata: when and by which run a row was written.
RUN_COLUMNS = {"load_id", "ingested_at", "created_at", "scored_at", "run_id", "computed_at", "quarantined_at"}
TABLE_KEYS = {
    catalog.BRONZE_TRANSACTIONS: ["source_file", "line_number"],
    catalog.BRONZE_LABELS: ["source_file", "line_number"],
    catalog.SILVER_TRANSACTIONS: ["transaction_id"],
    catalog.SILVER_LABELS: ["transaction_id"],
    catalog.QUARANTINE: ["source_file", "line_number"],
    catalog.CUSTOMER_FEATURES: ["snapshot_date", "customer_id"],
    catalog.TERMINAL_FEATURES: ["snapshot_date", "terminal_id"],
    catalog.PREDICTIONS: ["transaction_id"],
    catalog.MONITORING: ["day", "metric", "subject", "scored_day", "model_version"],
}
ENGINE_MODES = {"sail": "embedded", "submit": "classic", "connect": "connect"}
TRAIN_MODES = {**ENGINE_MODES, "connect": "embedded"}  # the Connect run's model is trained on Sail (commands.connect_steps)


def table_frame(run, table: str) -> pd.DataFrame:
    """The table as delta-rs reads it, run metadata dropped, landing files by name, sorted."""
    settings = run.settings()
    layer, name = table.split(".")
    frame = DeltaTable(f"{settings.lake_root}/{layer}/{name}").to_pandas()
    frame = frame.drop(columns=[c for c in frame.columns if c in RUN_COLUMNS])
    if "source_file" in frame:
        frame["source_file"] = frame["source_file"].map(lambda uri: PurePosixPath(uri).name)
    if table == catalog.MONITORING:
        frame["details"] = frame["details"].map(_stable_details)
    keys = TABLE_KEYS[table]
    return frame.sort_values(keys, kind="mergesort", na_position="first").reset_index(drop=True)


def _stable_details(text: str) -> str:
    """Monitoring details without the run's own identifiers (paths of the run's home)."""
    details = json.loads(text)
    return json.dumps({k: v for k, v in details.items() if k not in {"report", "run_id"}}, sort_keys=True)


def logged_events(output: str, event: str) -> list[dict]:
    out = []
    for line in output.splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_every_engine_trained_and_ran_the_night(engine_runs, classic_cluster) -> None:
    for engine, run in engine_runs.items():
        trained = {s["mode"] for s in logged_events(run.results["train"].output, "engine.session")}
        assert trained == {TRAIN_MODES[engine]}, engine
        night = {s["mode"] for s in logged_events(run.results["nightly"].output, "engine.session")}
        assert night == {ENGINE_MODES[engine]}, engine
        finished = logged_events(run.results["nightly"].output, "stage.finished")
        assert [(s["stage"], s["status"]) for s in finished] == [
            (stage, "succeeded") for stage in ("ingest", "features", "materialize")
        ] + [("fresh_features", "skipped"), ("score", "succeeded"), ("monitor", "succeeded"), ("retrain", "skipped")], \
            engine  # fresh features (--if-needed) and retraining (--if-enabled) are off in the tiny world
    codes = {engine: run.results["nightly"].returncode for engine, run in engine_runs.items()}
    assert len(set(codes.values())) == 1, f"the engines disagree on the night's outcome: {codes}"
    # The spark-submit runs were applications of the standalone cluster, with executors there.
    apps = master_json(classic_cluster.state.webui_url)["completedapps"]
    assert len([a for a in apps if a["name"] == "cardscore"]) >= 2  # train and nightly
    assert all(a["cores"] >= 1 for a in apps if a["name"] == "cardscore")


@pytest.mark.parametrize("table", list(TABLE_KEYS))
def test_delta_tables_are_identical_on_every_engine(engine_runs, table: str) -> None:
    sail = table_frame(engine_runs["sail"], table)
    night = world.TINY.night
    if table in (catalog.SILVER_TRANSACTIONS, catalog.PREDICTIONS):
        assert (sail["tx_date"] == night).sum() > 0, "the night wrote rows"
    for engine in ("submit", "connect"):
        other = table_frame(engine_runs[engine], table)
        assert list(other.columns) == list(sail.columns), engine
        assert len(other) == len(sail), engine
        for column in sail.columns:
            mismatched = ~((sail[column] == other[column]) | (sail[column].isna() & other[column].isna()))
            assert not mismatched.any(), (
                f"{engine} {table}.{column}: {int(mismatched.sum())} rows differ, e.g. "
                f"{sail.loc[mismatched, column].head(3).tolist()} vs {other.loc[mismatched, column].head(3).tolist()}"
            )


def test_scores_are_bitwise_equal_and_the_models_identical(engine_runs) -> None:
    from cardscore.core import registry

    scores = {e: table_frame(r, catalog.PREDICTIONS)["score"].to_numpy() for e, r in engine_runs.items()}
    for engine in ("submit", "connect"):
        assert np.array_equal(scores[engine].view(np.uint64), scores["sail"].view(np.uint64)), engine
    metrics = {}
    for engine, run in engine_runs.items():
        settings = run.settings()
        champion = registry.resolve_alias(settings)
        run_data = registry.client(settings).get_run(champion.run_id).data
        metrics[engine] = {k: v for k, v in run_data.metrics.items() if k.startswith(("test_", "train_"))}
        assert metrics[engine], engine
    assert metrics["submit"] == metrics["sail"] == metrics["connect"]


def test_jvm_written_tables_are_read_back_by_sail(spark, engine_runs) -> None:
    """Sail reads every table the JVM runs wrote (and the version delta-rs sees is the one Sail
    reads): the other direction, JVM reading Sail's, is the runs themselves (their base)."""
    for engine in ("submit", "connect"):
        settings = engine_runs[engine].settings()
        for table in (catalog.SILVER_TRANSACTIONS, catalog.CUSTOMER_FEATURES, catalog.PREDICTIONS, catalog.MONITORING):
            layer, name = table.split(".")
            uri = f"{settings.lake_root}/{layer}/{name}"
            expected = DeltaTable(uri).to_pandas()
            assert spark.read.format("delta").load(uri).count() == len(expected) > 0, (engine, table)
