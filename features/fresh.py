"""Fresh features: event-time aggregates per transaction, declared ONCE (`FRESH_FEATURES`).

Semantics in features/README.md ("Fresh features"). A transaction of card c and terminal m at
time t (UTC epoch microseconds) sees the other transactions of c / m with event time in the
half-open window [t-W, t) and the fraud labels reported strictly before t.

This module is plain Python (no Spark): the declaration, the amount rounding both paths share,
and the finishing formulas' constants. Two consumers are generated from the declaration:

* `features.fresh_spark.fresh_features` - the exact offline point-in-time values (Spark);
* `features.fresh_state.FreshState` - the incremental online state (pure Python).

Neither lists windows or features of its own: both loop over `FRESH_FEATURES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from cardscore.features.definitions import CUSTOMER_KEY, TERMINAL_KEY

MICROS_PER_SECOND = 1_000_000
MINUTE_US = 60 * MICROS_PER_SECOND
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
# How late an event may be and still be served exactly online (README: "Allowed lateness"):
# also how far a reader (the scorer) may be behind the pipeline that stored the rows it reads.
ALLOWED_LATENESS_US = DAY_US
# An event whose time is further than this ahead of the processing clock (wall time) is not
# added to any fresh state: the contracts admit times up to 2199, and one such transaction or
# report would move its entity's (or the whole state's) event-time clock decades ahead and
# evict every real event behind it (README: "Events from the future").
MAX_AHEAD_OF_CLOCK_US = DAY_US
# Value of a feature with nothing to measure where 0 would be a real value (README's table).
NO_VALUE = -1.0
# Amounts become integer micro-units (round half up of the double product) before any sum, so
# sums are exact and independent of the summation order on every engine.
AMOUNT_SCALE = 1_000_000


def ahead_of_clock(us: int, now_us: int) -> bool:
    """Whether an event at `us` is too far ahead of the processing clock `now_us` to be kept."""
    return us > now_us + MAX_AHEAD_OF_CLOCK_US


class Entity(StrEnum):
    CARD = "card"
    TERMINAL = "terminal"


# The contract column that keys each entity ("the card" is the contract's customer).
ENTITY_KEYS: dict[Entity, str] = {Entity.CARD: CUSTOMER_KEY, Entity.TERMINAL: TERMINAL_KEY}


class Aggregate(StrEnum):
    """What a feature measures over its entity's transactions in [t-W, t)."""

    COUNT = "count"  # their number
    SUM = "sum"  # the sum of their amounts
    MEAN = "mean"  # sum / count; 0.0 when empty
    SINCE_PREVIOUS = "since_previous"  # seconds from the latest of them to t; NO_VALUE when empty
    DISTINCT_TERMINALS = "distinct_terminals"  # number of distinct terminal ids among them
    OVER_MEAN = "over_mean"  # the transaction's own amount / their mean; NO_VALUE when sum is 0
    FRAUDS_REPORTED = "frauds_reported"  # number of them with a fraud report before t


INTEGER_AGGREGATES = frozenset({Aggregate.COUNT, Aggregate.DISTINCT_TERMINALS, Aggregate.FRAUDS_REPORTED})


@dataclass(frozen=True)
class FreshFeature:
    name: str
    entity: Entity
    window_us: int  # W: the window is [t - W, t)
    aggregate: Aggregate

    @property
    def dtype(self) -> str:
        return "int64" if self.aggregate in INTEGER_AGGREGATES else "float64"

    @property
    def key(self) -> str:
        return ENTITY_KEYS[self.entity]


# ------------------------------------------------------------------------------ the declaration

CARD_WINDOWS: dict[str, int] = {"10min": 10 * MINUTE_US, "1h": HOUR_US, "24h": DAY_US}
CARD_LONG_WINDOW = ("30d", 30 * DAY_US)  # previous transaction, 30-day mean, frauds so far
TERMINAL_WINDOWS: dict[str, int] = {"1h": HOUR_US, "24h": DAY_US}
TERMINAL_FRAUD_WINDOWS: dict[str, int] = {"7d": 7 * DAY_US, "28d": 28 * DAY_US}


def _declare() -> tuple[FreshFeature, ...]:
    card, terminal = Entity.CARD, Entity.TERMINAL
    long_label, long_us = CARD_LONG_WINDOW
    features: list[FreshFeature] = []
    for label, w in CARD_WINDOWS.items():
        features += [
            FreshFeature(f"card_nb_tx_{label}", card, w, Aggregate.COUNT),
            FreshFeature(f"card_amount_sum_{label}", card, w, Aggregate.SUM),
            FreshFeature(f"card_amount_mean_{label}", card, w, Aggregate.MEAN),
        ]
    features += [
        FreshFeature("card_seconds_since_previous_tx", card, long_us, Aggregate.SINCE_PREVIOUS),
        FreshFeature("card_nb_terminals_24h", card, CARD_WINDOWS["24h"], Aggregate.DISTINCT_TERMINALS),
        FreshFeature(f"card_amount_over_mean_{long_label}", card, long_us, Aggregate.OVER_MEAN),
        FreshFeature(f"card_nb_frauds_reported_{long_label}", card, long_us, Aggregate.FRAUDS_REPORTED),
    ]
    features += [
        FreshFeature(f"terminal_nb_tx_{label}", terminal, w, Aggregate.COUNT)
        for label, w in TERMINAL_WINDOWS.items()
    ]
    features += [
        FreshFeature(f"terminal_nb_frauds_reported_{label}", terminal, w, Aggregate.FRAUDS_REPORTED)
        for label, w in TERMINAL_FRAUD_WINDOWS.items()
    ]
    return tuple(features)


FRESH_FEATURES: tuple[FreshFeature, ...] = _declare()
FRESH_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FRESH_FEATURES)


def features_of(entity: Entity, features: tuple[FreshFeature, ...] = FRESH_FEATURES) -> tuple[FreshFeature, ...]:
    return tuple(f for f in features if f.entity == entity)


def longest_window_us(entity: Entity, features: tuple[FreshFeature, ...] = FRESH_FEATURES) -> int:
    """How far back the entity's features look (0 when it has none)."""
    return max((f.window_us for f in features_of(entity, features)), default=0)


# ------------------------------------------------------------------------------ shared arithmetic


def amount_micros(amount: float) -> int:
    """The amount in integer micro-units: the double product amount * 1e6 rounded half away from
    zero, as Spark's `round(amount * 1e6)` does. Exact for |amount * 1e6| < 2**52 (the contract's
    amounts are at most 100,000), where adding 0.5 to the double product is exact."""
    scaled = float(amount) * float(AMOUNT_SCALE)
    if scaled < 0:
        return -math.floor(-scaled + 0.5)
    return math.floor(scaled + 0.5)


def micros_to_amount(micros: int) -> float:
    """A sum of micro-units as a double: long -> double (exact below 2**53), then / 1e6."""
    return float(micros) / float(AMOUNT_SCALE)
