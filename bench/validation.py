"""Per-message validation of the stream scorer: `python -m bench validation [--smoke]`.

What is measured: `streaming.messages.split_messages` on micro-batches of 500 transaction
messages (the shared contract validator, columns, key check), the stream's largest CPU cost at
full speed. Baselines in the same run, on the same bytes:

* `json_loads`: `json.loads` of each message alone (the C parser: the floor of any validator
  that reads JSON in Python);
* `full_check_per_field`: the validator with every field decided by the general per-field check
  (`schemas.validation._check_field`, what every value went through before the accepting checks
  compiled per field), with `json.loads` building its decoder per call, as before.

Results: bench/results/validation.json (microseconds per message, medians of --runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import write_result

BATCH = 500


class _Message:
    """What the validator reads of a confluent-kafka message."""

    __slots__ = ("_key", "_offset", "_value")

    def __init__(self, value: bytes, key: bytes, offset: int) -> None:
        self._value, self._key, self._offset = value, key, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def topic(self) -> str:
        return "transactions"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def error(self) -> None:
        return None


def _full_check_per_field(raw: bytes) -> Any:
    from cardscore.schemas.contracts import TRANSACTION_EVENT
    from cardscore.schemas.validation import Rejection, _check_field, _keep_constant, _parse_int

    obj = json.loads(raw.decode("utf-8"), parse_constant=_keep_constant, parse_int=_parse_int)
    record = {}
    for field in TRANSACTION_EVENT.fields:
        result = _check_field(field, obj[field.name])
        if isinstance(result, Rejection):
            return result
        record[field.name] = result
    return record


def per_message_us(fn: Callable[[], Any], messages: int, runs: int, repeat: int) -> dict[str, Any]:
    """Median over `runs` of the time per message of `repeat` calls of `fn`."""
    fn()  # warm
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        samples.append((time.perf_counter() - started) / (repeat * messages) * 1e6)
    return {"median_us_per_message": round(statistics.median(samples), 3),
            "runs_us_per_message": [round(s, 3) for s in samples]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench validation", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs (median)")
    parser.add_argument("--repeat", type=int, default=40, help="micro-batches of 500 per run")
    parser.add_argument("--smoke", action="store_true", help="1 run of 2 batches (validation.smoke.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.repeat = 1, 2

    from bench.stream import transaction_lines
    from cardscore.simulator.kafka import customer_key
    from cardscore.streaming.messages import split_messages

    lines = transaction_lines(BATCH, seed=1, first_id=1)
    messages = [_Message(line, customer_key(line), i) for i, line in enumerate(lines)]
    split = split_messages(messages, 65_536)
    if len(split.valid) != BATCH or split.rejected:
        raise RuntimeError("the benchmark's messages must all be valid")
    if [_full_check_per_field(line) for line in lines] != split.valid.records:
        raise RuntimeError("the baseline must decide exactly what the validator decides")

    measured = {
        "split_messages": per_message_us(lambda: split_messages(messages, 65_536), BATCH, args.runs, args.repeat),
        "full_check_per_field": per_message_us(lambda: [_full_check_per_field(m) for m in lines], BATCH,
                                               args.runs, args.repeat),
        "json_loads": per_message_us(lambda: [json.loads(m) for m in lines], BATCH, args.runs, args.repeat),
    }
    us = {name: m["median_us_per_message"] for name, m in measured.items()}
    payload = {
        "parameters": {"batch": BATCH, "runs": args.runs, "repeat": args.repeat, "message_bytes":
                       round(statistics.mean(len(line) for line in lines), 1)},
        "measured": measured,
        "summary": {
            "split_messages_us": us["split_messages"],
            "messages_per_s_one_core": round(1e6 / us["split_messages"]),
            "full_check_over_split_messages": round(us["full_check_per_field"] / us["split_messages"], 2),
            "split_messages_over_json_loads": round(us["split_messages"] / us["json_loads"], 2),
        },
    }
    path = write_result("validation", payload, smoke=args.smoke)
    print(json.dumps(payload["summary"]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
