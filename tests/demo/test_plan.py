"""Which days of a demo world play which part (no engine: the plan is date arithmetic)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cardscore.core.config import load_settings
from cardscore.demo import NIGHTLY_DAYS, make_plan


def plan_for(n_days: int, **more: object):
    return make_plan(load_settings(overrides={"simulator": {"n_days": n_days}, **more}))


def test_the_handbook_world_keeps_the_handbook_test_week() -> None:
    plan = plan_for(183)
    assert plan.train_start == date(2018, 7, 25) and plan.test_last == date(2018, 8, 14)


def test_a_short_world_ends_its_test_week_when_its_labels_are_complete() -> None:
    plan = plan_for(75)  # 2018-04-01..06-14: backfill to 06-11, nightly 06-12..14
    assert plan.backfill_last == date(2018, 6, 11) and plan.nightly_days[-1] == date(2018, 6, 14)
    # Labels arrive up to 7 days late: the last test day is 7 days before the backfill's end,
    # so training at the end of the backfill sees every test label.
    assert plan.test_last == plan.backfill_last - timedelta(days=7) == date(2018, 6, 4)
    assert plan.train_start == date(2018, 5, 15)
    quick = plan_for(75, monitoring={"label_delay_days": 2})
    assert quick.test_last == plan.backfill_last - timedelta(days=2)


def test_too_short_a_world_is_refused_with_the_least_it_needs() -> None:
    least = 8 + 21 + 7 + NIGHTLY_DAYS
    assert plan_for(least).train_start == date(2018, 4, 9)
    with pytest.raises(ValueError, match=f"at least {least} days"):
        plan_for(least - 1)


def test_the_gate_floor_is_lowered_only_for_truncated_feature_windows() -> None:
    from cardscore.demo import short_world_gate

    def settings(n_days: int, **more: object):
        return load_settings(overrides={"simulator": {"n_days": n_days}, **more})

    assert not short_world_gate(settings(75))  # training from day 45: full 37-day windows
    assert not short_world_gate(settings(183))
    assert short_world_gate(settings(60))  # training from day 30: windows truncated
    own_gate = {"training": {"gate": {"min_auc_roc": 0.9}}}
    assert not short_world_gate(settings(60, **own_gate))  # the user's gate is kept as it is


def test_a_world_on_another_calendar_plans_by_its_settings_alone() -> None:
    """The protocol's default first day is placed in the world, where the handbook puts it in
    its own (day 115), not on the handbook's calendar."""
    other_year = {"start_date": "2024-02-20"}
    full = plan_for(183, simulator={"n_days": 183, **other_year})
    assert full.train_start == date(2024, 2, 20) + timedelta(days=115)
    assert full.test_last == full.train_start + timedelta(days=20)
    short = plan_for(75, simulator={"n_days": 75, **other_year})  # crosses 2024-02-29
    assert short.first == date(2024, 2, 20) and short.last == date(2024, 5, 4)
    assert short.test_last == short.backfill_last - timedelta(days=7)
    late = plan_for(75, simulator={"n_days": 75, "start_date": "2018-09-01"})  # after mid-July 2018
    assert late.first <= late.train_start - timedelta(days=8) and late.test_last <= late.last
    # `cardscore train` gets the same default: the handbook's offset in the configured world.
    settings = load_settings(overrides={"simulator": other_year})
    assert settings.training.protocol.train_start == date(2024, 6, 14)
    assert load_settings().training.protocol.train_start == date(2018, 7, 25)


def test_an_explicit_first_training_day_outside_the_world_names_the_setting_and_dates() -> None:
    world = {"n_days": 75, "start_date": "2021-03-01"}
    with pytest.raises(ValueError) as refused:
        plan_for(75, simulator=world, training={"protocol": {"train_start": "2018-07-25"}})
    message = str(refused.value)
    assert "training.protocol.train_start 2018-07-25" in message
    assert "simulator.start_date 2021-03-01" in message and "2021-03-09 at the earliest" in message
    # A configured day inside the world is kept; one too late for the backfill moves earlier.
    assert plan_for(75, simulator=world, training={"protocol": {"train_start": "2021-03-20"}}).train_start \
        == date(2021, 3, 20)
    with pytest.raises(ValueError, match=r"simulator.n_days 20 is too short .* 2021-03-01 to 2021-03-20"):
        plan_for(20, simulator={**world, "n_days": 20})
