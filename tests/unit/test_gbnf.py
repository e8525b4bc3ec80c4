"""`engines/upstream/gbnf.py`: Sijo's Lark grammars as GBNF, checked with llama.cpp's own grammar engine.

Every translated grammar is handed to llama.cpp's parser (`llama_sampler_init_grammar`, which
returns NULL for a grammar it cannot read), and what it accepts is checked by running its grammar
sampler over the tokens of a candidate text: a token the grammar forbids gets a logit of -inf, and
the end-of-generation token is allowed only where the grammar can end. The vocabulary is that of
the embedded SmolLM2 model (loaded vocabulary-only: no weights).
"""

from __future__ import annotations

import ctypes
import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import llama_cpp
import pytest

from sijo.engines.base import GrammarError
from sijo.engines.upstream.gbnf import to_gbnf
from sijo.output.citations import citations_grammar
from sijo.output.grammar import CallSpec, calls_grammar, json_grammar, thinking_grammar
from sijo.prompt import markup
from tests.projector import smollm2_path


class Vocab:
    """A llama.cpp vocabulary: tokenising text, and running GBNF grammars over tokens."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.eos = int(llama_cpp.llama_vocab_eos(handle))

    def tokens(self, text: str) -> list[int]:
        """The tokenizer's own tokens for `text` (no special tokens)."""
        data = text.encode()
        buffer = (llama_cpp.llama_token * (len(data) + 8))()
        count = llama_cpp.llama_tokenize(self.handle, data, len(data), buffer, len(buffer), False, False)
        assert count >= 0, f"could not tokenize {text!r}"
        return list(buffer[:count])

    def parses(self, gbnf: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.handle, gbnf.encode(), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    def run(self, gbnf: str) -> Run:
        return Run(self, gbnf)


class Run:
    """One pass of a grammar sampler: feed text, ask whether a token is allowed or the text may end."""

    def __init__(self, vocab: Vocab, gbnf: str) -> None:
        self.vocab = vocab
        self.sampler = llama_cpp.llama_sampler_init_grammar(vocab.handle, gbnf.encode(), b"root")
        assert self.sampler, f"llama.cpp could not parse the grammar:\n{gbnf}"

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.sampler)

    def allows(self, token: int) -> bool:
        """Whether the grammar leaves `token` possible next (its logit not masked to -inf)."""
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(candidates))
        return not math.isinf(candidates.data[0].logit)

    def feed(self, pieces: Sequence[tuple[str, list[int]]]) -> str:
        """Accept the pieces' tokens in order while the grammar allows them; the text of the pieces
        accepted (a piece is accepted only whole)."""
        accepted: list[str] = []
        for text, tokens in pieces:
            for token in tokens:
                if not self.allows(token):  # accepting a forbidden token would abort llama.cpp
                    return "".join(accepted)
                llama_cpp.llama_sampler_accept(self.sampler, token)
            accepted.append(text)
        return "".join(accepted)

    def can_end(self) -> bool:
        return self.allows(self.vocab.eos)


@pytest.fixture(scope="module")
def vocab() -> Iterator[Vocab]:
    try:
        path = smollm2_path()
    except FileNotFoundError as exc:
        pytest.skip(f"no embedded model to take a vocabulary from: {exc}")
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    assert model, f"llama.cpp could not load {path}"
    try:
        yield Vocab(llama_cpp.llama_model_get_vocab(model))
    finally:
        llama_cpp.llama_model_free(model)


def by_char(vocab: Vocab, text: str) -> list[tuple[str, list[int]]]:
    """`text` one character at a time (each character tokenised alone), so that a rejection is
    pinned to the exact character."""
    return [(char, vocab.tokens(char)) for char in text]


def accepted_prefix(vocab: Vocab, gbnf: str, text: str) -> str:
    """The longest prefix of `text` (in characters) that the grammar lets be written."""
    run = vocab.run(gbnf)
    try:
        return run.feed(by_char(vocab, text))
    finally:
        run.close()


def accepts(vocab: Vocab, gbnf: str, text: str, *, whole_tokens: bool = False) -> bool:
    """Whether the grammar lets `text` be written and generation end right after it; with
    `whole_tokens`, fed as the tokenizer splits it rather than character by character."""
    run = vocab.run(gbnf)
    try:
        pieces = [(text, vocab.tokens(text))] if whole_tokens else by_char(vocab, text)
        return run.feed(pieces) == text and run.can_end()
    finally:
        run.close()


def rules(gbnf: str) -> dict[str, str]:
    """The GBNF's rules by name; every line defines one, and no name twice."""
    found: dict[str, str] = {}
    for line in gbnf.splitlines():
        match = re.fullmatch(r"([A-Za-z0-9-]+) ::= (.+)", line)
        assert match, f"not a GBNF rule: {line!r}"
        assert match[1] not in found, f"rule {match[1]} defined twice"
        found[match[1]] = match[2]
    return found


def references(body: str) -> list[str]:
    """The rule names a GBNF rule body uses (outside its literals and character classes)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]', " ", body)
    return re.findall(r"[A-Za-z][A-Za-z0-9-]*", bare)


# The grammars Sijo writes, one of each shape.

WEATHER = CallSpec(
    "get_weather",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city"],
    },
)
PING = CallSpec("ping", {"type": "object"})
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "place": {"$ref": "#/$defs/Place"},
        "day": {"type": "string", "format": "date"},
    },
    "required": ["unit", "place"],
    "$defs": {"Place": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]}},
}
REFS = ["1.1", "2.3"]
SHAPES = {
    "json-answer": json_grammar(ANSWER_SCHEMA),
    "forced-calls-parallel": calls_grammar([WEATHER, PING], forced=True, parallel=True),
    "forced-call-single": calls_grammar([WEATHER, PING], forced=True, parallel=False),
    "auto-calls": calls_grammar([WEATHER, PING], forced=False, parallel=True),
    "calls-or-answer": calls_grammar([WEATHER], forced=False, parallel=False, answer_schema=ANSWER_SCHEMA),
    "thinking": thinking_grammar(),
    "citations": citations_grammar(REFS),
}


def call(name: str, arguments: dict[str, Any]) -> str:
    return markup.call_text(name, arguments)


def gbnf_of(shape: str) -> str:
    return to_gbnf(SHAPES[shape])


# a. Every shape translates to GBNF that llama.cpp reads.


def test_the_parser_check_is_not_vacuous(vocab: Vocab) -> None:
    """llama.cpp's parser refuses a grammar with an undefined rule and a malformed one."""
    assert vocab.parses('root ::= "a"')
    assert not vocab.parses("root ::= missing")
    assert not vocab.parses('root ::= ("a"')


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_shape_translates_to_gbnf_llama_cpp_parses(vocab: Vocab, shape: str) -> None:
    gbnf = gbnf_of(shape)
    found = rules(gbnf)
    assert found["root"] == "root-start"
    assert "root-start" in found
    assert vocab.parses(gbnf), gbnf


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_referenced_rule_is_defined(shape: str) -> None:
    found = rules(gbnf_of(shape))
    for name, body in found.items():
        for ref in references(body):
            assert ref in found, f"{name} refers to undefined {ref}"


# b. What the grammars accept and reject.


def test_thinking_accepts_text_up_to_the_closing_tag_then_only_the_end(vocab: Vocab) -> None:
    gbnf = gbnf_of("thinking")
    for whole_tokens in (False, True):
        assert accepts(vocab, gbnf, "abc </think>", whole_tokens=whole_tokens)
    run = vocab.run(gbnf)
    try:
        assert run.feed([("abc </think>", vocab.tokens("abc </think>"))]) == "abc </think>"
        (x,) = vocab.tokens("x")
        assert not run.allows(x), "text went on after </think>"
        assert run.can_end()
    finally:
        run.close()


def test_thinking_cannot_end_before_the_closing_tag(vocab: Vocab) -> None:
    gbnf = gbnf_of("thinking")
    for text in ("", "abc", "abc </think", "a </thinking>", "<think>"):
        assert accepted_prefix(vocab, gbnf, text) == text  # any text may come before the tag
        assert not accepts(vocab, gbnf, text), text


def test_thinking_ends_at_the_first_closing_tag(vocab: Vocab) -> None:
    gbnf = gbnf_of("thinking")
    assert accepted_prefix(vocab, gbnf, "a</think></think>") == "a</think>"
    assert accepted_prefix(vocab, gbnf, "a</think>\n") == "a</think>"


def test_thinking_holds_any_text_including_newlines_and_non_ascii(vocab: Vocab) -> None:
    gbnf = gbnf_of("thinking")
    text = "Überlegung: 2 < 3 > 1,\n\t«ok» 🙂 </thinker> </think>"
    assert accepts(vocab, gbnf, text)
    assert accepts(vocab, gbnf, text, whole_tokens=True)


@pytest.mark.parametrize(
    "text", ["<</think>", "</</think>", "</thi</think>", "</think</think>", "<<<</think>"]
)
def test_until_automaton_finds_the_tag_after_overlapping_starts(vocab: Vocab, text: str) -> None:
    """A false start that is itself a start of the tag (`<` after `<`, `</thi` then `</think>`)."""
    assert accepts(vocab, to_gbnf(thinking_grammar()), text)


def test_until_automaton_with_a_self_overlapping_word(vocab: Vocab) -> None:
    """`abab` overlaps itself: after `aba`, an `a` leaves `a` matched, not nothing (KMP)."""
    gbnf = to_gbnf("start: x\nx[lazy]: /(?s:.*)abab/\n")
    assert accepts(vocab, gbnf, "abab")
    assert accepts(vocab, gbnf, "aabab")
    assert accepts(vocab, gbnf, "abaabab")
    assert accepts(vocab, gbnf, "abbabab")
    assert accepted_prefix(vocab, gbnf, "ababab") == "abab"  # the first occurrence ends it
    assert accepted_prefix(vocab, gbnf, "aababb") == "aabab"
    assert not accepts(vocab, gbnf, "abaab")
    # `aab`: after `aa`, another `a` leaves `aa` matched.
    gbnf = to_gbnf("start: x\nx[lazy]: /(?s:.*)aab/\n")
    assert accepts(vocab, gbnf, "aaab")
    assert accepts(vocab, gbnf, "aaaaab")
    assert accepted_prefix(vocab, gbnf, "abaaab!") == "abaaab"


def test_without_automaton_with_a_self_overlapping_word(vocab: Vocab) -> None:
    gbnf = to_gbnf("start: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*)abab(?s:.*)/\n")
    assert accepts(vocab, gbnf, "")
    assert accepts(vocab, gbnf, "abaaba bba")
    assert accepted_prefix(vocab, gbnf, "abaabab!") == "abaaba"
    assert accepted_prefix(vocab, gbnf, "aabab") == "aaba"
    assert accepted_prefix(vocab, gbnf, "ababab") == "aba"
    gbnf = to_gbnf("start: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*)aab(?s:.*)/\n")
    assert accepts(vocab, gbnf, "abba aba")
    assert accepted_prefix(vocab, gbnf, "aaab") == "aaa"
    assert accepted_prefix(vocab, gbnf, "baaaab") == "baaaa"


def test_without_automaton_non_empty_form(vocab: Vocab) -> None:
    """`/(?s:.+)/ & ~…`: at least one character, never the banned text."""
    gbnf = to_gbnf("start: TEXT\nTEXT: /(?s:.+)/ & ~/(?s:.*)<cite(?s:.*)/\n")
    assert not accepts(vocab, gbnf, "")
    assert accepts(vocab, gbnf, "a")
    assert accepts(vocab, gbnf, "<")
    assert accepts(vocab, gbnf, "x <cit")
    assert accepted_prefix(vocab, gbnf, "x <<cite") == "x <<cit"


def test_auto_calls_allow_plain_text(vocab: Vocab) -> None:
    gbnf = gbnf_of("auto-calls")
    assert accepts(vocab, gbnf, "")
    assert accepts(vocab, gbnf, "The weather in Paris is mild.\nBye!")
    assert accepts(vocab, gbnf, "a < b and <tool_cal and <tool_call")  # never the whole tag


def test_auto_calls_allow_text_then_calls(vocab: Vocab) -> None:
    gbnf = gbnf_of("auto-calls")
    one = call("get_weather", {"city": "Paris"})
    two = call("ping", {})
    assert accepts(vocab, gbnf, one)
    assert accepts(vocab, gbnf, "Let me check.\n" + one)
    assert accepts(vocab, gbnf, "Let me check.\n" + one + markup.CALL_SEPARATOR + two)


def test_auto_calls_text_rejects_the_call_tag_except_as_a_call(vocab: Vocab) -> None:
    gbnf = gbnf_of("auto-calls")
    # After `<tool_call>` only a call may follow: its newline, then the call's JSON.
    assert accepted_prefix(vocab, gbnf, "I use <tool_call> tags") == "I use <tool_call>"
    assert not accepts(vocab, gbnf, "I use <tool_call>")
    assert accepted_prefix(vocab, gbnf, "x <tool_call>\nhello") == "x <tool_call>\n"
    assert accepted_prefix(vocab, gbnf, '<tool_call>\n{"name": "nope"') == '<tool_call>\n{"name": "'


@pytest.mark.parametrize("lead", ["<", "<tool_", "<tool_call", "<tool_call<", "a<t<to<tool_"])
def test_auto_calls_find_the_tag_after_overlapping_prefixes(vocab: Vocab, lead: str) -> None:
    gbnf = gbnf_of("auto-calls")
    text = lead + "<tool_call>"
    assert accepts(vocab, gbnf, text + "\n" + call("ping", {})[len(markup.CALL_OPEN) :])
    assert accepted_prefix(vocab, gbnf, text + " more") == text  # the tag, even after a false start
    assert accepts(vocab, gbnf, lead)  # the false start alone is text


def test_forced_calls_parallel(vocab: Vocab) -> None:
    gbnf = gbnf_of("forced-calls-parallel")
    one = call("get_weather", {"city": "Paris", "unit": "c"})
    two = call("ping", {})
    assert accepts(vocab, gbnf, one)
    assert accepts(vocab, gbnf, one + markup.CALL_SEPARATOR + two + markup.CALL_SEPARATOR + one)
    assert accepted_prefix(vocab, gbnf, "Sure. " + one) == ""  # a forced call starts at once
    assert not accepts(vocab, gbnf, "")


def test_forced_calls_hold_arguments_to_their_tool_schema(vocab: Vocab) -> None:
    gbnf = gbnf_of("forced-calls-parallel")
    assert not accepts(vocab, gbnf, call("get_weather", {}))  # `city` is required
    assert not accepts(vocab, gbnf, call("get_weather", {"city": "Oslo", "unit": "kelvin"}))
    assert not accepts(vocab, gbnf, call("get_weather", {"city": 3}))
    assert not accepts(vocab, gbnf, call("ping", {"extra": 1}))  # closed: no undeclared properties
    assert not accepts(vocab, gbnf, call("unknown", {}))


def test_forced_single_call_ends_after_one(vocab: Vocab) -> None:
    gbnf = gbnf_of("forced-call-single")
    one = call("ping", {})
    assert accepts(vocab, gbnf, one)
    assert accepted_prefix(vocab, gbnf, one + markup.CALL_SEPARATOR + one) == one


def test_calls_or_answer(vocab: Vocab) -> None:
    gbnf = gbnf_of("calls-or-answer")
    answer = json.dumps({"unit": "celsius", "place": {"lat": 48.5}})
    assert accepts(vocab, gbnf, answer)
    assert accepts(vocab, gbnf, call("get_weather", {"city": "Paris"}))
    assert accepted_prefix(vocab, gbnf, "Hello") == ""
    assert not accepts(vocab, gbnf, call("get_weather", {"city": "Paris"}) + "\n" + answer)


def test_json_answer_follows_the_schema(vocab: Vocab) -> None:
    gbnf = gbnf_of("json-answer")
    place = {"lat": -12.25}
    assert accepts(vocab, gbnf, json.dumps({"unit": "celsius", "place": place}))
    assert accepts(vocab, gbnf, json.dumps({"unit": "fahrenheit", "place": place, "day": "2024-02-29"}))
    # Not in the enum: rejected at the first character that leaves it.
    kelvin = json.dumps({"unit": "kelvin", "place": place})
    assert accepted_prefix(vocab, gbnf, kelvin) == '{"unit": "'
    assert not accepts(vocab, gbnf, json.dumps({"unit": "celsiusx", "place": place}))
    # Required `place` ($ref to $defs) missing, or not matching its definition.
    assert not accepts(vocab, gbnf, json.dumps({"unit": "celsius"}))
    assert not accepts(vocab, gbnf, json.dumps({"unit": "celsius", "place": {"lat": "north"}}))
    assert not accepts(vocab, gbnf, json.dumps({"unit": "celsius", "place": place, "extra": 1}))
    assert not accepts(vocab, gbnf, "not json")


@pytest.mark.parametrize("day", ["2023-02-29", "2024-13-01", "2024-04-31", "0000-01-01", "24-01-01"])
def test_json_answer_dates_are_calendar_dates(vocab: Vocab, day: str) -> None:
    gbnf = gbnf_of("json-answer")
    assert not accepts(vocab, gbnf, json.dumps({"unit": "celsius", "place": {"lat": 1}, "day": day}))


def test_citations_cite_only_known_passages(vocab: Vocab) -> None:
    gbnf = gbnf_of("citations")
    assert accepts(vocab, gbnf, "")
    assert accepts(vocab, gbnf, "Plain text, a < b.")
    cited = 'Cats nap <cite ref="1.1">a lot</cite>, dogs <cite ref="2.3">bark</cite>.'
    assert accepts(vocab, gbnf, cited)
    assert accepts(vocab, gbnf, '<cite ref="2.3">only a claim</cite>')
    assert accepted_prefix(vocab, gbnf, 'x <cite ref="9.9">no</cite>') == 'x <cite ref="'
    assert accepted_prefix(vocab, gbnf, 'x <cite ref="1.2">no</cite>') == 'x <cite ref="1.'


def test_citations_claims_are_plain_and_closed(vocab: Vocab) -> None:
    gbnf = gbnf_of("citations")
    assert accepted_prefix(vocab, gbnf, '<cite ref="1.1">a<b</cite>') == '<cite ref="1.1">a<'
    assert accepted_prefix(vocab, gbnf, '<cite ref="1.1"></cite>') == '<cite ref="1.1">'  # not empty
    assert not accepts(vocab, gbnf, '<cite ref="1.1">unclosed')
    # `<cite` outside a citation can never end the reply: it must become one.
    assert not accepts(vocab, gbnf, "a <cite> b")


# c. What cannot be translated is refused, saying what.


@pytest.mark.parametrize(
    ("lark", "said"),
    [
        ("start: WORD\nWORD: /[a-z]{3}\\d/\n", "regex /[a-z]{3}\\d/"),
        ("%import common.WS\nstart: WS\n", "%import common.WS"),
        ("start: T\nT: /(?s:.*)/ & /(?s:.*)x/\n", "'&' outside `A & ~B`"),
        ("start: T\nT: /(?s:.*)/ & ~/abc/\n", "/(?s:.*)/ & ~/abc/"),
        ("start: T\nT: /[a-z]+/ & ~/(?s:.*)x(?s:.*)/\n", "/[a-z]+/ & ~/(?s:.*)x(?s:.*)/"),
        ('answer: "a"\n', "no start rule"),
        ("start: x\nx: /(?s:.*)x/\n", "regex /(?s:.*)x/"),
        ("start: x\nx[lazy]: /(?s:.*)a|b/\n", "'a|b'"),
        ("start: T\nT: /(?s:.*)/ & ~/(?s:.*)(?s:.*)/\n", "empty search text"),
        ('start: "a"{2}\n', "'{2}'"),
        ('start: "a".."z"\n', "'..\"z\"'"),
        ('start: "a" ~ "b"\n', "'~' outside"),
        ("start: a\na: %json {not json}\n", "cannot read %json schema"),
        ('start: a\na: %json {"type": "foo"}\n', "JSON schema"),
    ],
)
def test_untranslatable_grammars_are_refused_saying_what(lark: str, said: str) -> None:
    with pytest.raises(GrammarError) as raised:
        to_gbnf(lark)
    assert said in str(raised.value)


# d. Schemas are translated each under its own prefix.

ITEM_A = CallSpec(
    "first",
    {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}},
        "required": ["item"],
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}},
    },
)
ITEM_B = CallSpec(
    "second",
    {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}},
        "required": ["item"],
        "$defs": {"Item": {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}},
    },
)


def test_same_defs_name_in_two_schemas_keeps_both_definitions(vocab: Vocab) -> None:
    gbnf = to_gbnf(calls_grammar([ITEM_A, ITEM_B], forced=True, parallel=True))
    found = rules(gbnf)
    first, second = reachable(found, "g-args-0"), reachable(found, "g-args-1")
    assert not first & second, "the two schemas share rules"
    (item_a,) = [name for name in first if name.endswith("-Item")]
    (item_b,) = [name for name in second if name.endswith("-Item")]
    # Each `Item` keeps its own schema's definition: `n` for the first tool, `s` for the second.
    key_n, key_s = '"\\"n\\""', '"\\"s\\""'  # the GBNF literals of the keys `"n"` and `"s"`
    assert key_n in literals(found, reachable(found, item_a))
    assert key_s not in literals(found, reachable(found, item_a))
    assert key_s in literals(found, reachable(found, item_b))
    assert key_n not in literals(found, reachable(found, item_b))
    assert accepts(vocab, gbnf, call("first", {"item": {"n": 7}}))
    assert accepts(vocab, gbnf, call("second", {"item": {"s": "seven"}}))
    assert not accepts(vocab, gbnf, call("first", {"item": {"s": "seven"}}))
    assert not accepts(vocab, gbnf, call("second", {"item": {"n": 7}}))
    both = call("first", {"item": {"n": 1}}) + markup.CALL_SEPARATOR + call("second", {"item": {"s": "x"}})
    assert accepts(vocab, gbnf, both)


def literals(found: dict[str, str], names: set[str]) -> set[str]:
    return {literal for name in names for literal in re.findall(r'"(?:[^"\\]|\\.)*"', found[name])}


def reachable(found: dict[str, str], start: str) -> set[str]:
    """The rules `start` uses, itself included."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += references(found[name])
    return seen
