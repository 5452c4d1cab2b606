"""The README's "A failed night", run as written, and a published day corrected later: after the
correction and one `cardscore nightly`, silver, the gold snapshots, the online store and the
predictions equal those of a clean run of the same days (real landing files, Delta, GX, Feast
with SQLite, MLflow registry).

Two homes share one tiny world: *clean* gets the correct files and is built stage by stage;
*healed* gets a day with CRLF line endings (the gate stops it) and a day with amounts in the
wrong currency (plausible: published), each corrected by a superseding file. The tests run in order.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cardscore.core import catalog
from cardscore.core.config import Settings, load_settings
from cardscore.core.pipeline import DONE_BEFORE, SKIPPED, SUCCEEDED
from cardscore.core.runner import execute
from cardscore.core.stage import JobContext, job_context
from cardscore.jobs.build_features.stage import SPEC as FEATURES
from cardscore.jobs.ingest.stage import SPEC as INGEST
from cardscore.jobs.materialize.stage import SPEC as MATERIALIZE
from cardscore.jobs.nightly.pipeline import NIGHTLY
from cardscore.jobs.score_batch.stage import SPEC as SCORE
from tests.ingest.test_ingest import folder
from tests.pipeline.test_nightly import rare_fraud_booster

REPO = Path(__file__).resolve().parents[2]
D1, D2, D3, D4, D5 = (date(2018, 4, d) for d in range(1, 6))
LINEAGE_COLUMNS = {"source_file", "load_id", "ingested_at", "created_at", "run_id", "scored_at"}


def readme_steps() -> tuple[list[str], list[str]]:
    """The commands of the README's "A failed night" block, before and after the re-delivery."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"### A failed night\n.*?```bash\n(.*?)```", text, re.S).group(1)
    before, after, current = [], [], None
    current = before
    for line in block.splitlines():
        if line.startswith("# upstream re-delivers"):
            current = after
        elif line.startswith("cardscore "):
            current.append(line)
    return before, after


def settings_for(home: Path) -> Settings:
    return load_settings(overrides={"home": str(home), "pipeline": {"retry": {"max_attempts": 1}}})


@pytest.fixture(scope="module")
def homes(spark, tmp_path_factory: pytest.TempPathFactory) -> dict[str, JobContext]:
    from cardscore.core.config.simulator import SimulatorSettings
    from cardscore.simulator import generate_world
    from cardscore.simulator.landing import write_landing
    from tests.scoring.world import register

    params = SimulatorSettings(n_customers=40, n_terminals=80, n_days=4, radius=20.0, seed=3,
                               compromised_terminals_per_day=1, compromised_customers_per_day=1)
    world = generate_world(params)
    root = tmp_path_factory.mktemp("failed-night")
    out = {}
    for name in ("clean", "healed"):
        ctx = job_context(settings_for(root / name / "home"), spark)
        write_landing(world, ctx.settings.landing_root)
        register(ctx.settings, rare_fraud_booster())  # version 1, the champion, in both registries
        out[name] = ctx
    clean, healed = out["clean"], out["healed"]
    # The clean reference, stage by stage; the online store serves D4 as after the night of D3.
    for target, days in ((INGEST, [D1, D2, D3, D4]), (FEATURES, [D1, D2, D3, D4, D5]), (MATERIALIZE, [D4]),
                         (SCORE, [D3, D4])):
        assert not any(r.failed for r in execute(target, clean, days))
    # The healed home's history before the bad night.
    for target, days in ((INGEST, [D1, D2]), (FEATURES, [D1, D2, D3]), (MATERIALIZE, [D3])):
        assert not any(r.failed for r in execute(target, healed, days))
    return out


def day_file(ctx: JobContext, day: date) -> Path:
    return folder(ctx.settings, "transactions", day) / f"transactions-{day.isoformat()}.jsonl"


def table(ctx: JobContext, name: str, where: str, keys: list[str]) -> pd.DataFrame:
    data = ctx.lake.read(name).where(where).toPandas()
    data = data[[c for c in data.columns if c not in LINEAGE_COLUMNS]]
    return data.sort_values(keys).reset_index(drop=True)


def assert_same_tables(healed: JobContext, clean: JobContext, last_night: date) -> None:
    """Silver, the gold snapshots up to the night's D+1, predictions: equal but for lineage."""
    upto = f"'{(last_night + timedelta(days=1)).isoformat()}'"
    pairs = [
        (catalog.SILVER_TRANSACTIONS, f"tx_date <= '{last_night.isoformat()}'", ["transaction_id"]),
        (catalog.SILVER_LABELS, f"reported_date <= '{last_night.isoformat()}'", ["transaction_id"]),
        (catalog.CUSTOMER_FEATURES, f"snapshot_date <= {upto}", ["customer_id", "snapshot_date"]),
        (catalog.TERMINAL_FEATURES, f"snapshot_date <= {upto}", ["terminal_id", "snapshot_date"]),
        (catalog.PREDICTIONS, f"tx_date >= '{D3.isoformat()}' AND tx_date <= '{last_night.isoformat()}'",
         ["transaction_id"]),
    ]
    for name, where, keys in pairs:
        mine, reference = table(healed, name, where, keys), table(clean, name, where, keys)
        assert len(mine) == len(reference), name
        assert len(mine) > 0 or name == catalog.TERMINAL_FEATURES, name  # none yet: 7 days of delay
        pd.testing.assert_frame_equal(mine, reference, check_exact=False, rtol=1e-12, obj=name)


def online_rows(ctx: JobContext, day: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the online store serves for every customer and terminal on `day`."""
    from cardscore.features.online import lookup
    from cardscore.features.store import feature_store

    at = int(pd.Timestamp(day.isoformat(), tz="UTC").value // 1000) + 3_600_000_000
    records = [{"customer_id": i, "terminal_id": i, "amount": 10.0, "event_time": at} for i in range(80)]
    found = lookup(feature_store(ctx.settings), records)
    return found.matrix, found.customer_known, found.terminal_known


def assert_same_online_store(healed: JobContext, clean: JobContext, day: date) -> None:
    mine, reference = online_rows(healed, day), online_rows(clean, day)
    assert mine[1].any(), "the store serves the day (terminals: none yet, 7 days of delay)"
    for got, want in zip(mine, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def statuses(result) -> dict[str, str]:
    return {r.stage: r.status for r in result.records}


def test_the_readme_steps_heal_a_failed_night(homes, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cardscore.cli import app

    clean, healed = homes["clean"], homes["healed"]
    good = day_file(healed, D3).read_bytes()
    lines = good.rstrip(b"\n").split(b"\n")
    day_file(healed, D3).write_bytes(b"".join(x + b"\r\n" for x in lines[:-1]) + lines[-1] + b"\n")  # the bad delivery

    monkeypatch.setenv("CARDSCORE__HOME", healed.settings.home)
    monkeypatch.setenv("CARDSCORE__PIPELINE__RETRY__MAX_ATTEMPTS", "1")
    # A four-day world has no terminal snapshot yet (7 days of delay): not an alert here.
    monkeypatch.setenv("CARDSCORE__MONITORING__DRIFT__UNKNOWN_TERMINAL_RATE", "1.0")
    runner = CliRunner()
    before, after = readme_steps()
    assert [c.split()[1] for c in before] == ["nightly", "runs", "landing"]
    outputs = []
    for command, code in zip(before, [1, 0, 0], strict=True):
        result = runner.invoke(app, shlex.split(command, comments=True)[1:])
        assert result.exit_code == code, f"{command}\n{result.output}"
        outputs.append(result.output)
    cause = f"transactions 2018-04-03: {len(lines) - 1:,} of {len(lines):,} lines rejected: encoding"
    assert cause in outputs[0]  # the nightly's failure says it first
    assert "encoding" in outputs[1] and "encoding" in outputs[2]

    (folder(healed.settings, "transactions", D3) / "transactions-2018-04-03-v2.jsonl").write_bytes(good)  # re-delivery
    for command in after:
        result = runner.invoke(app, shlex.split(command, comments=True)[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
        outputs.append(result.output)
    assert "superseded by transactions-2018-04-03-v2.jsonl" in outputs[3]
    night = [line for line in outputs[4].splitlines() if line.startswith("2018-04-03 ")]
    assert [line.split()[1:3] for line in night][:6] == [
        ["ingest", "succeeded:"], ["features", "succeeded:"], ["materialize", "succeeded:"],
        ["fresh_features", "skipped:"], ["score", "succeeded:"], ["monitor", "succeeded:"]]

    assert_same_tables(healed, clean, D3)
    assert_same_online_store(healed, clean, D4)


def test_a_published_day_corrected_later_heals_everything_downstream(homes) -> None:
    clean, healed = homes["clean"], homes["healed"]
    good = day_file(healed, D4).read_bytes()
    from cardscore.core.logs import configure_logging

    configure_logging()  # the CLI runs of the test before logged to streams that are closed now
    halved = [json.dumps({**json.loads(x), "amount": round(json.loads(x)["amount"] / 2, 2)}).encode()
              for x in good.rstrip(b"\n").split(b"\n")]
    day_file(healed, D4).write_bytes(b"".join(x + b"\n" for x in halved))  # amounts in the wrong currency

    published = execute(NIGHTLY, healed, [D4])[0]
    assert not published.failed, published.failed and published.failed.error  # plausible: it passes
    assert healed.lake.read(catalog.PREDICTIONS).where("tx_date = '2018-04-04'").count() > 0

    from cardscore.jobs.ingest.corrections import supersede

    (folder(healed.settings, "transactions", D4) / "transactions-2018-04-04-v2.jsonl").write_bytes(good)
    supersede(healed, D4, "transactions-2018-04-04-v2.jsonl", reason="amounts in the wrong currency", actor="ops")
    result = execute(NIGHTLY, healed, [D4])[0]
    assert statuses(result) == {"ingest": SUCCEEDED, "features": SUCCEEDED, "materialize": SUCCEEDED,
                                "fresh_features": SKIPPED, "score": SUCCEEDED, "monitor": SUCCEEDED,
                                "retrain": SKIPPED}
    reasons = {r.stage: r.reason for r in result.records}
    assert "ops.landing_corrections" in reasons["ingest"] and "landing 2018-04-04 changed" in reasons["ingest"]
    assert "silver.transactions" in reasons["features"] and "(tx_date 2018-04-04)" in reasons["features"]
    assert "(snapshot_date 2018-04-05)" in reasons["materialize"]
    assert "(tx_date 2018-04-04)" in reasons["score"] and "gold.predictions" in reasons["monitor"]
    ledger = {r["stage"]: r for r in healed.lake.read(catalog.PIPELINE_RUNS).where(
        f"run_id = '{result.run_id}'").toPandas().to_dict("records")}
    assert json.loads(ledger["score"]["details"])["rerun_reason"] == reasons["score"]

    assert not any(r.failed for r in execute(MATERIALIZE, clean, [D5]))
    assert_same_tables(healed, clean, D4)
    assert_same_online_store(healed, clean, D5)

    again = execute(NIGHTLY, healed, [D3, D4])  # nothing changed for either night since
    for night in again:
        assert {s for s in statuses(night).values()} == {DONE_BEFORE, SKIPPED}, statuses(night)
