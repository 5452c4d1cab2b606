"""The validator's fast path (orjson, accepting only) never decides differently from the stdlib
path: on every hostile corpus line, random edits of valid lines, and generated documents full of
what the two decoders disagree on (NaN, integers beyond 64 bits, long float tokens, escapes,
lone surrogates, deep nesting, odd whitespace, repeated keys), it either steps aside (None) or
returns exactly the stdlib path's record, value types and float bits included."""

from __future__ import annotations

import json
import sys
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cardscore.schemas.contracts import LABEL_EVENT, TRANSACTION_EVENT
from cardscore.schemas.validation import (
    Rejection,
    _accepted_fast,
    _check_field,
    parse_json,
    validate_bytes,
)
from tests.corpus import GOOD_LABEL, GOOD_TX, LABEL_LINES, TRANSACTION_LINES, fuzz_lines

CONTRACTS = (TRANSACTION_EVENT, LABEL_EVENT)
# valid, with an unknown field nested past the stdlib decoder's depth limit (orjson's is 1024)
DEEP_UNKNOWN = json.dumps(GOOD_TX)[:-1] + ', "channel": ' + "[" * 1000 + "1" + "]" * 1000 + "}"


def stdlib_path(text: str, contract) -> Any:
    """The reference: the stdlib decoder and every field through the full check (none of the
    accepting checks, so they are checked too)."""
    obj = parse_json(text)
    if not isinstance(obj, dict):
        return obj
    record = {}
    for field in contract.fields:
        if field.name not in obj:
            record[field.name] = None if field.nullable else Rejection(None, "missing")
            continue
        record[field.name] = _check_field(field, obj[field.name])
    return record


def exact(record: dict[str, Any]) -> list[tuple[str, type, str]]:
    """A record with its values' types and reprs (-0.0 is not 0.0, 12 is not 12.0)."""
    return [(k, type(v), repr(v)) for k, v in record.items()]


def assert_agrees(text: str) -> bool:
    """Whether the fast path decided (it must then equal the stdlib path) for either contract.
    Under Python's default recursion limit, the stdlib decoder's depth limit in production
    (hypothesis raises the limit while it runs a test)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        return _agrees(text)
    finally:
        sys.setrecursionlimit(limit)


def _agrees(text: str) -> bool:
    decided = False
    for contract in CONTRACTS:
        fast = _accepted_fast(text, contract)
        if fast is None:
            continue
        decided = True
        slow = stdlib_path(text, contract)
        assert isinstance(slow, dict), (text, slow)
        assert not any(isinstance(v, Rejection) for v in slow.values()), (text, slow)
        assert exact(fast) == exact(slow), text
    return decided


def texts_of(lines: list[bytes]) -> list[str]:
    out = []
    for raw in lines:
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue  # rejected before any JSON decoding
    return out


def test_corpus_and_random_edits_decide_the_same() -> None:
    lines = [raw for _, raw, _ in (*TRANSACTION_LINES, *LABEL_LINES)] + fuzz_lines(seed=11, count=20_000)
    for text in [*texts_of(lines), DEEP_UNKNOWN]:
        assert_agrees(text)


def test_plain_valid_records_take_the_fast_path() -> None:
    """The point of it: a valid message is accepted without the stdlib decoder."""
    for record, contract in ((GOOD_TX, TRANSACTION_EVENT), (GOOD_LABEL, LABEL_EVENT)):
        text = json.dumps(record)
        assert _accepted_fast(text, contract) == validate_bytes(text.encode(), contract)
        assert _accepted_fast(text, contract) is not None


# ------------------------------------------------------------------ generated documents

def _float_tokens() -> st.SearchStrategy[str]:
    digits = st.text("0123456789", min_size=1, max_size=30)
    return st.builds(
        lambda sign, whole, frac, exp: f"{sign}{whole.lstrip('0') or '0'}{frac}{exp}",
        st.sampled_from(["", "-"]),
        digits,
        st.one_of(st.just(""), digits.map(lambda d: "." + d)),
        st.one_of(st.just(""), st.integers(-400, 400).map(lambda e: f"e{e}"),
                  st.integers(-30, 30).map(lambda e: f"E+{e}" if e >= 0 else f"E{e}")),
    )


INTEGER_TOKENS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 10**60).map(str),
    st.sampled_from([str(2**63 - 1), str(2**63), str(-(2**63)), str(-(2**63) - 1), str(2**64 - 1),
                     str(2**64), "-0", "0", "1" * 25, "9" * 400]),
)
STRINGS = st.one_of(
    st.text(max_size=12).map(json.dumps),
    st.text(max_size=12).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(['"\\ud800"', '"\\udc00\\ud83d"', '"\\ud83d\\ude00"', '"\\u0000"', '"a\tb"', '"\\/"',
                     '"2018-04-01T00:07:56Z"', '"2018-04-01T00:07:56.5Z"', '"2018-02-30T00:00:00Z"',
                     '"x" "y"', '"\\x41"']),
)
SCALARS = st.one_of(
    INTEGER_TOKENS, _float_tokens(), STRINGS,
    st.sampled_from(["true", "false", "null", "NaN", "Infinity", "-Infinity", "-NaN", "True", "nul", "1.",
                     ".5", "01", "+1", "0x10", "1e", "--1"]),
)
WHITESPACE = st.sampled_from(["", " ", "\n", "\t", "\x0c", "\x0b", "\xa0", "\u2028", "\u3000"])


def _nested(value: str, depth: int) -> str:
    return "[" * depth + value + "]" * depth


VALUES = st.one_of(
    SCALARS,
    # the stdlib decoder's depth limit is Python's recursion limit (~1000 less the caller's
    # stack), orjson's 1024: around both
    st.tuples(SCALARS, st.one_of(st.integers(1, 70), st.integers(900, 1100))).map(lambda t: _nested(*t)),
    st.lists(SCALARS, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.lists(st.tuples(STRINGS, SCALARS), max_size=3).map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"),
)
KEYS = st.sampled_from([*GOOD_TX, *GOOD_LABEL, "channel", "amount ", "AMOUNT"]).map(json.dumps)


@st.composite
def documents(draw) -> str:
    base = dict(draw(st.sampled_from([GOOD_TX, GOOD_LABEL])))
    members = [(json.dumps(k), json.dumps(v)) for k, v in base.items()]
    for _ in range(draw(st.integers(0, 4))):  # replace, add (repeated keys too) or drop members
        action = draw(st.sampled_from(["replace", "add", "drop"]))
        if action == "drop" and members:
            members.pop(draw(st.integers(0, len(members) - 1)))
        elif action == "replace" and members:
            i = draw(st.integers(0, len(members) - 1))
            members[i] = (members[i][0], draw(VALUES))
        else:
            members.insert(draw(st.integers(0, len(members))), (draw(KEYS), draw(VALUES)))
    ws = draw(WHITESPACE)
    body = "{" + ",".join(f"{ws}{k}{ws}:{ws}{v}" for k, v in members) + ws + "}"
    return draw(WHITESPACE) + body + draw(st.sampled_from(["", "\n", " ", ",", "}", "\x00", " x"]))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
@example(DEEP_UNKNOWN)
def test_generated_documents_decide_the_same(text: str) -> None:
    assert_agrees(text)


@settings(max_examples=2000, deadline=None)
@given(_float_tokens())
def test_amount_tokens_are_read_to_the_same_double(token: str) -> None:
    """A float token in the amount field: where the fast path accepts it, its double is the
    stdlib's, bit for bit (long mantissas, exponents near the double range's edges)."""
    text = json.dumps(GOOD_TX).replace("57.5", token)
    assert "57.5" in json.dumps(GOOD_TX)
    assert_agrees(text)
