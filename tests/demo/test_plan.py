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
