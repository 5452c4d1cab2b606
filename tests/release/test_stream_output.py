"""A stream batch under a release serialises per-row arms, versions and shadow scores
byte-identically to the contract's one serialiser (fast tier)."""

from __future__ import annotations

import json
from datetime import date

import jsonschema
import numpy as np
import xgboost as xgb

from cardscore.core.config.release import FallbackRules
from cardscore.features.definitions import MODEL_FEATURES
from cardscore.model.release import ServingModel, ServingPlan
from cardscore.schemas.contracts import SCORE_EVENT
from cardscore.schemas.serialization import event_line
from cardscore.streaming.output import ScoreColumns, score_json_schema, score_values
from cardscore.streaming.release import release_columns


def _booster(seed: int) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.random((200, len(MODEL_FEATURES))) * 100
    data = xgb.DMatrix(x, label=(x[:, seed] > 50).astype(int), feature_names=list(MODEL_FEATURES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1}, data, num_boost_round=3)


def test_release_fields_are_serialised_per_row_as_the_contract_says() -> None:
    n = 300
    rng = np.random.default_rng(5)
    cards = rng.integers(0, 50, n)
    plans = {
        "canary+shadow": ServingPlan(ServingModel("m", "1", _booster(1)), canary=ServingModel("m", "2", _booster(2)),
                                     share=50, salt="2", shadow=ServingModel("m", "3", _booster(3)),
                                     rules=FallbackRules()),
        "frozen": ServingPlan(ServingModel("m", "1", _booster(1)), frozen=True, rules=FallbackRules()),
    }
    validator = jsonschema.Draft202012Validator(score_json_schema())
    for name, plan in plans.items():
        scored = plan.score(rng.random((n, len(MODEL_FEATURES))) * 100, cards)
        fields = release_columns(scored)
        columns = ScoreColumns(
            transaction_id=np.arange(n), customer_id=cards, terminal_id=np.arange(n) % 7,
            event_time_us=np.full(n, 1_522_540_800_000_000), feature_snapshot_date=[date(2018, 4, 1)] * n,
            unknown_customer=np.zeros(n, bool), unknown_terminal=np.zeros(n, bool),
            scored_at_us=1_700_000_000_123_456, **fields)
        values = score_values(columns)
        for i, value in enumerate(values):
            shadow = scored.shadow_score[i]
            record = {
                "transaction_id": i, "customer_id": int(cards[i]), "terminal_id": i % 7,
                "event_time": 1_522_540_800_000_000, "score": float(scored.score[i]),
                "model_name": scored.model_name[i], "model_version": scored.model_version[i],
                "feature_snapshot_date": date(2018, 4, 1), "unknown_customer": False, "unknown_terminal": False,
                "scored_at": 1_700_000_000_123_456, "arm": scored.arm[i], "fallback": bool(scored.fallback[i]),
                "shadow_model_version": scored.shadow_model_version[i],
                "shadow_score": None if np.isnan(shadow) else float(shadow),
            }
            assert value == event_line(record, SCORE_EVENT), name
            assert not list(validator.iter_errors(json.loads(value)))
        parsed = [json.loads(v) for v in values]
        if name == "frozen":
            assert all(p["fallback"] and p["arm"] == "fallback" and p["shadow_score"] is None for p in parsed)
        else:
            assert {p["arm"] for p in parsed} == {"champion", "canary"}
            assert {p["shadow_model_version"] for p in parsed} == {"1", "3"}
