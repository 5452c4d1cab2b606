"""The retraining trigger's rule: k violating days out of the last n (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any


@dataclass(frozen=True)
class TriggerDecision:
    day: date
    fire: bool
    k: int
    n: int
    violating_days: list[str]  # within the window, oldest first
    window: list[str]  # the n days considered, oldest first
    reason: str
    metrics: dict[str, list[str]] = field(default_factory=dict)  # violating day -> metrics

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out


def decide(
    day: date,
    violations: Mapping[date, list[str]],
    k: int,
    n: int,
    require_latest: bool = True,
) -> TriggerDecision:
    """Fire when at least `k` of the `n` days ending at `day` have a violation (a day absent
    from `violations` or with an empty list had none), and, with `require_latest`, `day` is one
    of them."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    window = [day - timedelta(days=i) for i in range(n - 1, -1, -1)]
    bad = [d for d in window if violations.get(d)]
    latest_bad = bool(violations.get(day))
    fire = len(bad) >= k and (latest_bad or not require_latest)
    if fire:
        reason = f"{len(bad)} of the last {n} days violated a counted threshold (k={k})"
    elif len(bad) < k:
        reason = f"only {len(bad)} of the last {n} days violated a counted threshold (k={k})"
    else:
        reason = f"{len(bad)} of the last {n} days violated, but not the latest ({day})"
    return TriggerDecision(
        day=day,
        fire=fire,
        k=k,
        n=n,
        violating_days=[d.isoformat() for d in bad],
        window=[d.isoformat() for d in window],
        reason=reason,
        metrics={d.isoformat(): sorted(set(violations[d])) for d in bad},
    )


def retrain_window_start(day: date, train_days: int, delay_days: int, test_days: int, label_delay_days: int) -> date:
    """First training day of a protocol whose test days end `label_delay_days` before `day`,
    so every test label is known when the trigger fires."""
    last_test_day = day - timedelta(days=label_delay_days)
    return last_test_day - timedelta(days=test_days + delay_days + train_days - 1)
