"""The handbook split on a hand-made world: training labels as known at the cutoff, known
compromised cards removed from the test days one day at a time, validation folds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd

from cardscore.model.protocol import Protocol, protocol_split, validation_folds

FIRST = date(2018, 7, 24)
# train 07-25..07-27, delay 07-28..07-29, test 07-30 (d0), 07-31 (d1), 08-01 (d2)
PROTOCOL = Protocol(date(2018, 7, 25), train_days=3, delay_days=2, test_days=3)


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def tx_id(customer: int, day: str) -> int:
    return customer * 100 + (date.fromisoformat(day) - FIRST).days


def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers 1..8, one transaction a day at noon from 07-24 to 08-01."""
    tx = pd.DataFrame(
        [
            {"transaction_id": c * 100 + d, "customer_id": c, "terminal_id": 9,
             "event_time": pd.Timestamp(at((FIRST + timedelta(days=d)).isoformat())), "amount": 10.0}
            for c in range(1, 9) for d in range(9)
        ]
    )
    frauds = [
        (1, "2018-07-25", at("2018-07-26")),  # training fraud, known: card out of every test day
        (2, "2018-07-28", at("2018-07-29")),  # delay day 0: known from test day 1
        (3, "2018-07-27", at("2018-07-30", 12)),  # training fraud reported after the cutoff
        (4, "2018-08-01", at("2018-08-01", 14)),  # a test fraud
        (5, "2018-07-24", at("2018-07-24", 20)),  # before the training window: never "known"
        (7, "2018-07-29", at("2018-07-29", 23)),  # delay day 1: known from test day 2
        (8, "2018-07-30", at("2018-07-30", 18)),  # a test fraud on day 0 (not known later)
    ]
    labels = pd.DataFrame(
        [{"transaction_id": tx_id(c, d), "is_fraud": True, "reported_time": pd.Timestamp(r)} for c, d, r in frauds]
        + [{"transaction_id": tx_id(6, "2018-07-26"), "is_fraud": False, "reported_time": pd.Timestamp(at("2018-07-27"))}]
    )
    return tx, labels


def by_day(frame: pd.DataFrame) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for _, r in frame.iterrows():
        out.setdefault(str(r["day"].date()), set()).add(int(r["customer_id"]))
    return out


def test_training_rows_and_labels_as_known_at_the_cutoff() -> None:
    tx, labels = world()
    split = protocol_split(tx, labels, PROTOCOL)
    assert PROTOCOL.cutoff == datetime(2018, 7, 30, tzinfo=UTC)
    assert sorted({str(d.date()) for d in split.train["day"]}) == ["2018-07-25", "2018-07-26", "2018-07-27"]
    assert len(split.train) == 8 * 3
    frauds = set(split.train.loc[split.train["label"] == 1, "transaction_id"])
    # customer 3's fraud was reported after the cutoff: a genuine transaction for this model.
    assert frauds == {tx_id(1, "2018-07-25")}
    assert split.train.loc[split.train["transaction_id"] == tx_id(3, "2018-07-27"), "label"].item() == 0
    # labels reported later still count if the cutoff is moved past them
    later = protocol_split(tx, labels, PROTOCOL, train_labels_as_of=at("2018-08-01"))
    assert set(later.train.loc[later.train["label"] == 1, "transaction_id"]) == {
        tx_id(1, "2018-07-25"), tx_id(3, "2018-07-27")
    }


def test_known_compromised_cards_leave_the_test_set_day_by_day() -> None:
    tx, labels = world()
    split = protocol_split(tx, labels, PROTOCOL)
    assert by_day(split.test) == {
        # d0 knows frauds up to 07-27 reported by 07-30 00:00: customer 1 only
        "2018-07-30": {2, 3, 4, 5, 6, 7, 8},
        # d1 adds delay day 07-28 (customer 2) and customer 3, whose label arrived on 07-30
        "2018-07-31": {4, 5, 6, 7, 8},
        # d2 adds delay day 07-29 (customer 7); customer 8's test-day fraud is not "known"
        "2018-08-01": {4, 5, 6, 8},
    }
    test_frauds = set(split.test.loc[split.test["label"] == 1, "transaction_id"])
    assert test_frauds == {tx_id(8, "2018-07-30"), tx_id(4, "2018-08-01")}
    assert "fraud_scenario" not in split.test.columns


def test_test_labels_as_of_an_evaluation_time() -> None:
    tx, labels = world()
    split = protocol_split(tx, labels, PROTOCOL, test_labels_as_of=at("2018-08-01", 13))
    # customer 4's fraud (reported 14:00) is not known at 13:00
    assert set(split.test.loc[split.test["label"] == 1, "transaction_id"]) == {tx_id(8, "2018-07-30")}


def test_handbook_default_windows() -> None:
    p = Protocol(date(2018, 7, 25))
    assert (p.train_end, p.test_start, p.test_end) == (date(2018, 8, 1), date(2018, 8, 8), date(2018, 8, 15))
    assert p.describe()["test_end"] == "2018-08-14"


def test_validation_folds_stay_before_the_delay_and_test_days() -> None:
    p = Protocol(date(2018, 7, 25))
    folds = validation_folds(p, n_folds=3, shift_days=7)
    # fold 0 validates on the last training week (the handbook's start_date_training_for_valid)
    assert folds[0].train_start == date(2018, 7, 11)
    assert (folds[0].test_start, folds[0].test_end) == (date(2018, 7, 25), date(2018, 8, 1))
    assert [f.train_start for f in folds] == [date(2018, 7, 11), date(2018, 7, 4), date(2018, 6, 27)]
    assert all(f.test_end <= p.train_end for f in folds)
