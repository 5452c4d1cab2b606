"""The benchmarks' own tools, without running a benchmark: the same-algorithm baseline agrees
with the tests' oracle, the growth fit and the plot of `bench scale`, the RSS sampler, and the
commands the README shows parse."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import linear_baseline
from bench.common import REPO_DIR
from bench.memory import PeakRSS, tree_rss_bytes
from bench.scale import fit_growth, plot
from cardscore.features.definitions import CUSTOMER_FEATURES, TERMINAL_FEATURES
from tests.features.oracle import customer_oracle, terminal_oracle
from tests.features.worlds import small_world


def _same_rows(ours: pd.DataFrame, oracle: pd.DataFrame, key: str, names: tuple[str, ...]) -> None:
    ours = ours.assign(snapshot_date=pd.to_datetime(ours["snapshot_date"]).dt.date)
    merged = ours.merge(oracle, on=[key, "snapshot_date"], how="outer", suffixes=("", "_oracle"), indicator=True)
    assert (merged["_merge"] == "both").all() and len(ours) == len(oracle) > 0
    for name in names:
        np.testing.assert_allclose(merged[name].to_numpy(np.float64), merged[f"{name}_oracle"].to_numpy(np.float64),
                                   rtol=1e-12, atol=0)


def test_the_numpy_baseline_computes_the_oracles_snapshots() -> None:
    world = small_world(seed=4, n_days=50, late_labels=True)
    first = world.params.start_date
    last = first + timedelta(days=world.params.n_days - 1)
    days = [first + timedelta(days=i) for i in range(world.params.n_days)]
    _same_rows(linear_baseline.customer_snapshots(world.transactions, first, last),
               customer_oracle(world.transactions, days), "customer_id", CUSTOMER_FEATURES)
    terminals = linear_baseline.terminal_snapshots(world.transactions, world.labels, first, last)
    _same_rows(terminals, terminal_oracle(world.transactions, world.labels, days), "terminal_id", TERMINAL_FEATURES)
    assert (terminals["terminal_id_risk_30day_window"] > 0).any()  # known frauds are exercised


def test_growth_fit_and_plot(tmp_path: Path) -> None:
    def world(factor: int, fixed: float, per_row_us: float) -> dict:
        rows = 10_000 * factor
        stage = {"rows": rows, "median_s": fixed + rows * per_row_us / 1e6, "memory": {"peak_mb": 500.0 + factor}}
        stage["us_per_row"] = stage["median_s"] / rows * 1e6
        return {"factor": factor, **{name: dict(stage) for name in ("ingest", "features", "nightly", "score")}}

    worlds = [world(f, fixed=2.0, per_row_us=50.0) for f in (1, 4, 16)]
    growth = fit_growth(worlds)
    fit = growth["score"]
    assert 0.3 < fit["exponent"] < 1.0  # a fixed cost makes growth sub-linear
    assert fit["linear_fit"]["fixed_s"] == pytest.approx(2.0, rel=1e-6)
    assert fit["linear_fit"]["marginal_us_per_row"] == pytest.approx(50.0, rel=1e-6)
    assert fit["per_row_relative_to_smallest"]["1"] == 1.0 > fit["per_row_relative_to_smallest"]["16"]
    png = tmp_path / "scale.png"
    plot(worlds, growth, png, "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peak_rss_sees_an_allocation() -> None:
    assert tree_rss_bytes() > 10 * 1024 * 1024 and tree_rss_bytes(children=False) > 10 * 1024 * 1024
    # This process alone: a test worker's children (brokers, engines of other tests) may exit
    # meanwhile and hide the allocation in the tree's total (seen in a full run: growth 0).
    # The block is held until the sampler thread has run once after the allocation: on a loaded
    # machine it may not get the GIL or a core within the few milliseconds the block lives
    # (seen in full runs: growth 0). A condition with a timeout, not a sleep.
    from cardscore.services.process import wait_until

    with PeakRSS(interval=0.01, children=False) as rss:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        block.sum()
        wait_until(lambda: rss.peak - rss.start >= 32 * 1024 * 1024, 30, interval=0.01, what="a sample after the allocation")
        del block
    assert rss.result()["growth_mb"] >= 32


@pytest.mark.parametrize("argv", [["--list"], ["scale", "--help"], ["batch_score", "--help"], ["features", "--help"]])
def test_bench_commands_parse(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert ("scale" in done.stdout) if argv == ["--list"] else ("usage" in done.stdout)


def test_stream_bench_client_conf_takes_key_value_pairs() -> None:
    """`bench stream --client-conf` (an A/B of one librdkafka setting) refuses a malformed
    pair before any broker starts; its help names where the results go."""
    bad = subprocess.run([sys.executable, "-m", "bench", "stream", "--client-conf", "socket.nagle.disable"],
                         cwd=REPO_DIR, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--client-conf takes KEY=VALUE" in bad.stderr
    helped = subprocess.run([sys.executable, "-m", "bench", "stream", "--help"], cwd=REPO_DIR, capture_output=True,
                            text=True, timeout=300)
    assert helped.returncode == 0 and "stream.client-conf.json" in helped.stdout


def test_scale_resume_reads_the_measured_worlds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench scale --resume`: a world whose JSON is in the work folder is read, not run again."""
    import argparse

    from bench import scale

    (tmp_path / "world-4.json").write_text('{"factor": 4, "marker": "earlier"}')
    args = argparse.Namespace(resume=True, smoke=False, remote=None, history_days=37, runs=1)
    ran: list[list[str]] = []
    monkeypatch.setattr(scale.subprocess, "run", lambda command, **_: ran.append(command))
    assert scale.run_world_in_child(4, args, tmp_path) == {"factor": 4, "marker": "earlier"}
    assert ran == []
    with pytest.raises(FileNotFoundError):  # not measured before: the child runs (here: a no-op)
        scale.run_world_in_child(1, args, tmp_path)
    assert ran and ran[0][ran[0].index("--child") + 1] == "1"


def test_scale_resume_needs_the_earlier_folder() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "scale", "--resume"], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--resume needs --workdir" in done.stderr


def test_validation_bench_smoke_run_writes_its_result() -> None:
    """`bench validation --smoke`: its baseline decides what the validator decides (it checks)."""
    import json

    done = subprocess.run([sys.executable, "-m", "bench", "validation", "--smoke"], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((REPO_DIR / "bench" / "results" / "validation.smoke.json").read_text())
    assert result["summary"]["split_messages_us"] > 0 and "machine" in json.dumps(result)


def test_fresh_bench_smoke_run_agrees_with_the_online_state_and_the_oracle() -> None:
    """`bench fresh --smoke`: the engine's backfill equals the online state on every
    transaction and the naive oracle on its sample (the bench exits 1 otherwise)."""
    import json

    done = subprocess.run([sys.executable, "-m", "bench", "fresh", "--smoke"], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((REPO_DIR / "bench" / "results" / "fresh.smoke.json").read_text())
    summary = result["summary"]
    assert summary["engine_equals_online_state"] and summary["engine_equals_oracle_on_sample"]
    assert result["engine"]["stage_backfill"]["published_rows"] == summary["transactions"] > 10_000
    assert summary["fraud_features_nonzero_share"]["terminal_nb_frauds_reported_28d"] > 0


def test_fresh_quality_bench_smoke_run_fits_every_feature_set_on_the_same_rows() -> None:
    """`bench fresh_quality --smoke`: the baseline, snapshot + fresh and every one-change
    ablation fitted and evaluated on the same test rows, with the fresh columns present."""
    import json

    from bench.fresh_quality import FRESH_GROUPS
    from cardscore.features.fresh import FRESH_FEATURE_NAMES

    done = subprocess.run([sys.executable, "-m", "bench", "fresh_quality", "--smoke"], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((REPO_DIR / "bench" / "results" / "fresh_quality.smoke.json").read_text())
    models = result["models"]
    assert len(models) == 2 + len(FRESH_GROUPS) + 1
    assert models["snapshot + fresh"]["features"] == models["snapshot (today's model)"]["features"] + len(FRESH_FEATURE_NAMES)
    assert all(0.5 <= m["auc_roc"] <= 1 for m in models.values()), {n: m["auc_roc"] for n, m in models.items()}
    assert result["stages"]["sizes"]["test_frauds"] > 0
    assert set(result["summary"]["ablation_cost_in_average_precision"]) == set(FRESH_GROUPS)


def test_stage_breakdown_reports_what_a_run_added_with_prometheus_quantiles() -> None:
    """Counts are the run's (after - before); p50/p99 interpolate within the bucket as
    histogram_quantile does; a quantile in the +Inf bucket is unknown, not a number."""
    from bench.histograms import bucket_quantile, stage_breakdown

    key = ("cardscore_stream_stage_latency_seconds", (("stage", "predict"),))
    before = {key: {0.001: 10.0, 0.01: 10.0, float("inf"): 10.0}}
    after = {key: {0.001: 60.0, 0.01: 110.0, float("inf"): 110.0}}
    added = stage_breakdown(before, after)["stage_latency_seconds{stage=predict}"]
    assert added["count"] == 100.0
    assert added["p50_ms"] == 1.0  # 50 of 100 in the first bucket: its upper bound
    assert added["p99_ms"] == 9.82  # 1 ms + (99 - 50) / 50 of the 9 ms bucket
    assert bucket_quantile([0.001, float("inf")], [1.0, 10.0], 0.5) is None
