"""write_landing / read_landing_day: the files a real upstream would deliver."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cardscore.core.config import Settings
from cardscore.schemas.contracts import LABEL_EVENT, TRANSACTION_EVENT
from cardscore.schemas.timestamps import format_timestamp_us
from cardscore.schemas.validation import validate_bytes
from cardscore.simulator import (
    LandingConflictError,
    World,
    generate_world,
    iter_landing_days,
    landing_file,
    read_landing_day,
    read_manifest,
    write_landing,
)

from .conftest import small_params


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def landing(settings: Settings, small_world: World) -> tuple[str, Path, dict]:
    uri = settings.landing_root
    manifest = write_landing(small_world, uri)
    return uri, Path(uri.removeprefix("file://")), manifest


def test_every_line_validates_in_order_with_unique_sorted_ids(landing, small_world: World) -> None:
    uri, _, _ = landing
    p = small_world.params
    days = [p.start_date + timedelta(days=d) for d in range(p.n_days)]
    assert list(iter_landing_days(uri, "transactions")) == days
    previous_time, ids = -1, []
    for day in days:
        for line in read_landing_day(uri, day):
            record = validate_bytes(line, TRANSACTION_EVENT)
            assert record, record
            assert set(json.loads(line)) == set(
                TRANSACTION_EVENT.field_names
            )  # nothing about fraud
            assert format_timestamp_us(record["event_time"]).startswith(day.isoformat())
            assert record["event_time"] >= previous_time
            previous_time = record["event_time"]
            ids.append(record["transaction_id"])
    assert ids == list(range(len(small_world.transactions)))


def test_label_files_by_arrival_day(landing, small_world: World) -> None:
    uri, _, manifest = landing
    label_days = list(iter_landing_days(uri, "labels"))
    assert label_days[0] == small_world.params.start_date
    assert len(label_days) > small_world.params.n_days  # the feed runs on past the last day
    assert len(label_days) == manifest["totals"]["label_files"]
    seen, previous = [], -1
    for day in label_days:
        for line in read_landing_day(uri, day, "labels"):
            record = validate_bytes(line, LABEL_EVENT)
            assert record, record
            assert format_timestamp_us(record["reported_time"]).startswith(day.isoformat())
            assert record["reported_time"] >= previous
            previous = record["reported_time"]
            seen.append(record["transaction_id"])
    frauds = small_world.transactions.loc[
        small_world.transactions["tx_fraud"] == 1, "transaction_id"
    ]
    assert sorted(seen) == sorted(frauds.tolist())


def test_reference_truth_and_manifest(landing, small_world: World) -> None:
    _, root, manifest = landing
    customers = pq.read_table(root / "reference/customers.parquet").to_pandas()
    assert list(customers.columns) == [
        "customer_id",
        "x",
        "y",
        "mean_amount",
        "std_amount",
        "mean_nb_tx_per_day",
    ]
    assert customers.equals(small_world.customers)
    terminals = pq.read_table(root / "reference/terminals.parquet").to_pandas()
    assert list(terminals.columns) == ["terminal_id", "x", "y"] and len(terminals) == 400
    truth = pq.read_table(root / "_simulation/truth.parquet").to_pandas()
    assert list(truth.columns) == ["transaction_id", "tx_fraud", "tx_fraud_scenario"]
    assert truth["tx_fraud"].sum() == manifest["totals"]["frauds"] == len(small_world.labels)

    on_disk = json.loads((root / "_simulation/manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["parameters"]["n_customers"] == 200 and on_disk["seed"] == 7
    assert on_disk["totals"]["transactions"] == len(small_world.transactions)
    assert sum(on_disk["frauds_per_scenario"].values()) == on_disk["totals"]["frauds"]
    assert sum(d["transactions"] for d in on_disk["days"]) == on_disk["totals"]["transactions"]
    assert sum(d["labels"] for d in on_disk["days"]) == on_disk["totals"]["labels"]
    assert on_disk["timing"]["generation_seconds"] >= 0 and on_disk["timing"]["write_seconds"] > 0
    # no temporary file is left behind
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]


def test_rewrite_is_byte_identical_and_other_parameters_are_refused(landing) -> None:
    uri, root, _ = landing
    before = _digests(root)
    write_landing(generate_world(small_params()), uri)  # a fresh generation, same parameters
    assert _digests(root) == before

    other = generate_world(small_params(seed=8, n_days=20))
    with pytest.raises(LandingConflictError, match="seed"):
        write_landing(other, uri)
    assert _digests(root) == before  # nothing was touched

    write_landing(other, uri, overwrite=True)
    assert read_manifest(uri)["parameters"]["seed"] == 8
    # the old world's later days are gone, not left stale next to the new ones
    assert len(list(iter_landing_days(uri, "transactions"))) == 20
    assert not (root / landing_file("transactions", date(2018, 4, 25))).exists()


def test_unmanifested_files_are_not_overwritten_silently(
    settings: Settings, small_world: World
) -> None:
    uri = settings.landing_root
    stray = Path(uri.removeprefix("file://")) / landing_file("transactions", date(2018, 4, 1))
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not ours\n")
    with pytest.raises(LandingConflictError, match="no simulation manifest"):
        write_landing(small_world, uri)
    write_landing(small_world, uri, overwrite=True)
    assert read_landing_day(uri, date(2018, 4, 1))[0].startswith(b'{"transaction_id":0,')


def test_missing_day_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="2018-04-01"):
        read_landing_day(settings.landing_root, date(2018, 4, 1))


def test_a_world_without_transactions_still_delivers_every_day(settings: Settings) -> None:
    # A radius so small that nobody reaches a terminal: every day's file exists and is empty.
    world = generate_world(small_params(radius=0.001))
    assert world.transactions.empty and world.labels.empty
    manifest = write_landing(world, settings.landing_root)
    assert manifest["totals"]["transactions"] == 0 and manifest["totals"]["fraud_rate"] == 0.0
    for feed in ("transactions", "labels"):
        days = list(iter_landing_days(settings.landing_root, feed))
        assert len(days) == 30
        assert all(read_landing_day(settings.landing_root, d, feed) == [] for d in days)
