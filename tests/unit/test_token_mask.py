"""`TokenMask` on a byte-level vocabulary, with a scripted "model".

Constrained JSON numbers stay within a double. llguidance's number rule accepts `1e999` and a mantissa of any length; a JSON reader turns either
into infinity and a serializer then writes `null`, so a strict tool's `number` field came back
`null` (caught by the property test on the real model). `TokenMask` masks the digit that would
overflow. A byte-level vocabulary and a scripted "model" that always prefers the digits make the
overflow certain without the guard.

A reply ended by its budget says why: cut (`length`), or whole with no room for more (`budget`,
which the service reports as `tool_use` when what fitted were whole calls).
"""

from __future__ import annotations

import json
import math
from typing import Any

import llguidance
import numpy as np
import pytest

from sijo.engines.base import FinishReason
from sijo.engines.llama_cpp.constraint import Ending, TokenMask
from sijo.output.grammar import CallSpec, calls_grammar, json_grammar
from sijo.prompt import markup
from tests.byte_vocab import EOS, PIECES, TOKENIZER

SCHEMA = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}


def _mask(grammar: str) -> TokenMask:
    matcher = llguidance.LLMatcher(TOKENIZER, llguidance.LLMatcher.grammar_from_lark(grammar))
    assert not matcher.is_error(), matcher.get_error()
    return TokenMask(matcher, len(PIECES), Ending.build(PIECES, EOS), end_in_budget=True)


def _write(schema: dict[str, Any], preferred: bytes, max_tokens: int) -> str:
    """Decode greedily with `preferred` bytes ranked first, in order, under the grammar."""
    mask = _mask(json_grammar(schema))
    ranks = np.zeros(len(PIECES), dtype=np.float32)
    for rank, byte in enumerate(preferred):
        ranks[byte] = len(preferred) - rank
    written: list[int] = []
    while len(written) < max_tokens:
        remaining = max_tokens - len(written)
        token = mask.forced(remaining)
        if token is None:
            logits = ranks.copy()
            mask.apply(logits)
            token = mask.accept(int(np.argmax(logits)), remaining)
        if token == EOS:
            break
        written.append(token)
    return bytes(written).decode()


@pytest.mark.parametrize(
    "script",
    [
        '{"x": ' + "9" * 400 + "}",
        '{"x": 1e999}',
        '{"x": -1e999}',
        '{"x": 1.5E+999}',
        '{"x": 0.1e309}',
        '{"x": 1e3080}',
    ],
)
def test_numbers_stay_finite(script: str) -> None:
    text, finish = _follow(json_grammar(SCHEMA), script, 600)
    value = json.loads(text)["x"]
    assert isinstance(value, (int, float)) and math.isfinite(value) and finish == "eos", text[:80]


def test_integers_stay_within_a_double_too() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    text = _write(schema, b'{"x: 9', 600)
    assert math.isfinite(float(json.loads(text)["x"])), text[:80]


def test_ordinary_numbers_are_untouched() -> None:
    for script in (
        '{"x": 12.5e3}',
        '{"x": -0.25E-300}',
        '{"x": 1e308}',
        '{"x": 17976931348623157' + "0" * 292 + "}",
    ):
        assert _follow(json_grammar(SCHEMA), script, 400) == (script, "eos")


def test_numbers_in_strings_are_not_numbers() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "string", "maxLength": 400}}, "required": ["x"]}
    text = _write(schema, b'9{x: "', 420)
    assert set(json.loads(text)["x"]) == {"9"} and len(json.loads(text)["x"]) > 320


CALL = markup.call_text("record", {"a": 1})
TOOLS = [CallSpec("record", {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})]


def _follow(grammar: str, script: str, max_tokens: int) -> tuple[str, FinishReason]:
    """Decode, the "model" wanting to write `script` then end its turn; returns what was written
    and the finish reason the scheduler would report."""
    mask = _mask(grammar)
    wanted = [*script.encode(), EOS]
    written: list[int] = []
    while len(written) < max_tokens:
        remaining = max_tokens - len(written)
        token = mask.forced(remaining)
        if token is None:
            logits = np.zeros(len(PIECES), dtype=np.float32)
            logits[wanted[min(len(written), len(wanted) - 1)]] = 10.0
            mask.apply(logits)
            token = mask.accept(int(np.argmax(logits)), remaining)
        if token == EOS:
            return bytes(written).decode(), mask.finish(eos=True)
        written.append(token)
    return bytes(written).decode(), mask.finish(eos=False)


def test_a_whole_call_with_no_room_for_another_is_not_cut() -> None:
    grammar = calls_grammar(TOOLS, forced=True, parallel=True)
    second = markup.CALL_SEPARATOR + markup.call_text("record", {"a": 123456789})
    text, finish = _follow(grammar, CALL + second, len(CALL) + 8)
    assert (text, finish) == (CALL, "budget")


def test_a_call_closed_early_is_cut() -> None:
    grammar = calls_grammar(TOOLS, forced=True, parallel=True)
    long_call = markup.call_text("record", {"a": 10**40})
    text, finish = _follow(grammar, long_call, len(CALL) + 20)
    assert finish == "length" and text.endswith(markup.CALL_CLOSE) and len(text) < len(long_call)


def test_a_call_that_nothing_may_follow_ends_the_turn() -> None:
    grammar = calls_grammar(TOOLS, forced=True, parallel=False)
    text, finish = _follow(grammar, CALL + "\nmore", len(CALL))
    assert (text, finish) == (CALL, "eos")


def test_a_call_the_model_ended_itself() -> None:
    grammar = calls_grammar(TOOLS, forced=True, parallel=True)
    assert _follow(grammar, CALL, 400) == (CALL, "eos")
