"""Constrained decoding with llguidance: grammars compiled once per text, a mask per sampled token.

The tokenizer is built from the model's own llama.cpp vocabulary (~0.2 s, once). A compiled grammar
is kept as a pristine matcher and each request gets a deep copy, so a tool schema that comes back
with every request of an agent loop is compiled once. Masking costs ~0.02 to 0.2 ms a token here.

`Ending` and `TokenMask` keep every reply able to finish: near the end of its budget a sampled
token is kept only if the grammar can still be completed in the tokens left after it.

`TokenMask` also keeps every JSON number within a double: llguidance's number rule allows `1e999`,
which every JSON reader turns into infinity (and a serializer into `null`), so a digit that would
overflow is masked like any token the grammar refuses.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import llguidance
import llguidance.llamacpp
import llguidance.numpy
import numpy as np
import numpy.typing as npt

from sijo.engines.base import FinishReason, GrammarError

_CACHED_GRAMMARS = 256


class Grammars:
    def __init__(self, vocab: Any) -> None:
        self._vocab = vocab
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._compiled: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()

    def matcher(self, grammar: str) -> llguidance.LLMatcher:
        """A fresh matcher for `grammar`; raises `GrammarError` if it does not compile."""
        with self._lock:
            pristine = self._compiled.get(grammar)
            if pristine is not None:
                self._compiled.move_to_end(grammar)
                return pristine.deep_copy()
            tokenizer = self._tokenizer_locked()
        compiled = llguidance.LLMatcher(
            tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar), log_level=0
        )
        if compiled.is_error():
            raise GrammarError(compiled.get_error())
        with self._lock:
            self._compiled[grammar] = compiled
            while len(self._compiled) > _CACHED_GRAMMARS:
                self._compiled.popitem(last=False)
        return compiled.deep_copy()

    def eos_token(self) -> int:
        """The token that ends a reply once its grammar is complete."""
        with self._lock:
            return int(self._tokenizer_locked().eos_token)

    def _tokenizer_locked(self) -> llguidance.LLTokenizer:
        if self._tokenizer is None:
            self._tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(self._vocab)
        return self._tokenizer


# Within one stretch of an ending (up to the next quote or forced token), a token is chosen at most
# this often while others are allowed, so it cannot loop where the grammar lets it repeat forever
# (a `}` inside an email's local part).
_REPEATS = 6
_LONGEST_ENDING = 384

# Single characters tried first, in order, when looking for a short ending. Inside a JSON string the
# quote closes it and format characters come next (`@` and `.` finish an email, `-` and `:` a date);
# outside, brackets close, then the shortest value of each type starts.
_IN_STRING = b'"@.-:1aTZ0'
_OUTSIDE = b'}]",0fn[{-'


@dataclass(frozen=True, slots=True)
class Ending:
    """Finds, from wherever a matcher stands, a short run of tokens that completes its grammar.

    The search is greedy and deterministic: forced tokens when the grammar forces some, else the
    first preferred single-character token the grammar allows, else the lowest-numbered allowed
    token (byte-level vocabularies number single bytes first). The matcher is rolled back after.
    """

    pieces: list[bytes]
    in_string: tuple[int, ...]
    outside: tuple[int, ...]
    eos: int
    numeric: npt.NDArray[np.int64]  # tokens that can continue a number (they start with a number byte)
    exponents: npt.NDArray[np.int64]  # those of them whose number part holds exponent digits
    longest_head: int  # the longest number part of a token

    @classmethod
    def build(cls, pieces: list[bytes], eos: int) -> Ending:
        single = {piece: token for token, piece in reversed(list(enumerate(pieces))) if len(piece) == 1}

        def tokens(chars: bytes) -> list[int]:
            return [single[bytes([c])] for c in chars if bytes([c]) in single]

        def closing(pattern: bytes) -> list[int]:
            """Tokens that close several brackets at once (`"}`, `}}`), longest first."""
            matches = [t for t, piece in enumerate(pieces) if re.fullmatch(pattern, piece)]
            return sorted(matches, key=lambda t: -len(pieces[t]))

        in_string = closing(rb'"[\]}]+') + tokens(_IN_STRING)
        outside = closing(rb"[\]}]{2,}") + tokens(_OUTSIDE)
        starts = (t for t, piece in enumerate(pieces) if piece[:1] and piece[0] in _NUMBER_BYTES)
        heads = {t: _number_head(pieces[t]) for t in starts}
        exponents = [t for t, head in heads.items() if re.search(rb"[eE][+-]?[0-9]", head)]
        return cls(
            pieces,
            tuple(in_string),
            tuple(outside),
            eos,
            np.array(sorted(heads), dtype=np.int64),
            np.array(exponents, dtype=np.int64),
            max(map(len, heads.values()), default=0),
        )

    def find(
        self, matcher: llguidance.LLMatcher, quotes: _Quotes, limit: int = _LONGEST_ENDING
    ) -> list[int] | None:
        """The tokens, end of turn included, or None if no ending shorter than `limit` was found.
        `quotes` says whether the text so far is inside a JSON string (a hint for the order)."""
        path: list[int] = []
        uses: dict[int, int] = {}
        consumed = 0
        quotes = replace(quotes, crossed=False)
        try:
            while len(path) < limit:
                if matcher.is_accepting() or matcher.is_stopped():
                    return [*path, self.eos]
                forced = matcher.compute_ff_tokens()
                taken = matcher.try_consume_tokens(forced) if forced else 0
                chosen = forced[:taken]
                if taken or quotes.crossed:  # a new stretch: each token may repeat again
                    uses.clear()
                    quotes.crossed = False
                if not taken:
                    token = self._choose(matcher, uses, quotes.inside)
                    if token is None or not matcher.consume_token(token):
                        return None
                    uses[token] = uses.get(token, 0) + 1
                    chosen = [token]
                consumed += len(chosen)
                for token in chosen:
                    quotes.feed(self.pieces[token] if token < len(self.pieces) else b"")
                path += chosen
            return None
        finally:
            if consumed:
                matcher.rollback(consumed)

    def _choose(self, matcher: llguidance.LLMatcher, uses: dict[int, int], in_string: bool) -> int | None:
        for token in self.in_string if in_string else self.outside:
            if uses.get(token, 0) < _REPEATS and matcher.validate_tokens([token]) == 1:
                return token
        bitmask = llguidance.numpy.allocate_token_bitmask(1, len(self.pieces))
        llguidance.numpy.fill_next_token_bitmask(matcher, bitmask)
        allowed = np.flatnonzero(np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: len(self.pieces)])
        candidates = [int(token) for token in allowed.tolist() if token != self.eos]
        fresh = [token for token in candidates if uses.get(token, 0) < _REPEATS]
        chosen = fresh or candidates
        return chosen[0] if chosen else None


_NUMBER_BYTES = frozenset(b"0123456789.eE+-")
_SAFE_DIGITS = 300  # a number this long without an exponent is still below 1e300
_NUMBER_START = frozenset(b"0123456789-")


@dataclass(slots=True)
class _Quotes:
    """Follows whether JSON text written so far is inside a string, and the number it ends in."""

    inside: bool = False
    escaped: bool = False
    crossed: bool = False  # a quote was fed since this was last cleared
    number: bytes = b""  # the number literal the text ends in, outside strings

    def feed(self, piece: bytes) -> None:
        for byte in piece:
            if self.escaped:
                self.escaped = False
            elif byte == 0x5C and self.inside:  # backslash
                self.escaped = True
            elif byte == 0x22:  # quote
                self.inside = not self.inside
                self.crossed = True
            if self.inside or byte not in (_NUMBER_BYTES if self.number else _NUMBER_START):
                self.number = b""
            else:
                self.number += bytes([byte])


def _fits(path: list[int], room: int) -> bool:
    """Whether an ending fits in `room` tokens. Its end of turn costs none: a reply whose budget runs
    out where its grammar is complete ends there all the same."""
    return len(path) - 1 <= room


def _finite(literal: bytes) -> bool:
    """Whether a number literal, completed with the fewest digits it still needs, fits a double."""
    if literal[-1:] in (b"e", b"E", b"+", b"-", b"."):
        literal += b"0"
    try:
        return math.isfinite(float(literal))
    except ValueError:  # not a number after all: the grammar will refuse it anyway
        return True


def _number_head(piece: bytes) -> bytes:
    """The part of a token that continues a number: its bytes up to the first one that ends it."""
    end = 0
    while end < len(piece) and piece[end] in _NUMBER_BYTES:
        end += 1
    return piece[:end]


# Once the tokens left are within twice the longest ending seen so far plus `_WATCH`, every sampled
# token is checked to leave an ending that still fits (a token can open a new call or object and
# lengthen the ending at once); further away, the ending is refreshed every `_REFRESH` tokens.
_WATCH = 64
_REFRESH = 8


class TokenMask:
    """A request's grammar state: masks each row of logits and, with an `Ending`, makes sure the reply
    can still complete its grammar within the tokens it has left.

    Each step either continues an ending already being followed (`forced`), or samples under the
    mask and keeps the sampled token only if an ending still fits after it (`accept`); otherwise it
    writes the first token of the ending found one step earlier, which fitted, and follows it.
    """

    def __init__(
        self, matcher: llguidance.LLMatcher, n_vocab: int, vocab: Ending, *, end_in_budget: bool
    ) -> None:
        self.matcher = matcher
        self._n_vocab = n_vocab
        self._bitmask = llguidance.numpy.allocate_token_bitmask(1, n_vocab)
        self._vocab = vocab
        self._ending = vocab if end_in_budget else None
        self._quotes = _Quotes()
        self._path: list[int] | None = None  # an ending, found `_since` tokens ago
        self._since = _REFRESH
        self._longest = 0  # the longest ending found so far
        self._following: list[int] = []
        self._closing = False  # an ending is being written to close the reply within its budget
        self._whole = False  # the reply was ended where it was whole, as more would not fit

    def forced(self, remaining: int) -> int | None:
        """The token this step writes without sampling (already consumed), or None to sample."""
        if self._following:
            return self._consume(self._following.pop(0))
        if self._ending is None:
            return None
        if self._since and (self._since >= _REFRESH or self._near_end(remaining)):
            self._refresh()
        if self._path is not None and not _fits(self._path, remaining):  # cannot fit any more: end now
            return self._follow(self._path)
        return None

    def apply(self, logits: npt.NDArray[np.float32]) -> None:
        llguidance.numpy.fill_next_token_bitmask(self.matcher, self._bitmask)
        llguidance.numpy.apply_token_bitmask_inplace(logits, self._bitmask)
        if self._quotes.number:
            self._keep_finite(logits)

    def _keep_finite(self, logits: npt.NDArray[np.float32]) -> None:
        """Mask the tokens that would carry the number being written past a double's range. Without an
        exponent, a number needs over 300 digits to get there; until then only tokens that bring
        exponent digits are checked (free text, where every token is allowed, stays cheap)."""
        number, vocab = self._quotes.number, self._vocab
        short = b"e" not in number and b"E" not in number and len(number) + vocab.longest_head < _SAFE_DIGITS
        candidates = vocab.exponents if short else vocab.numeric
        for token in candidates[np.isfinite(logits[candidates])].tolist():
            if not _finite(self._quotes.number + _number_head(self._vocab.pieces[token])):
                logits[token] = -np.inf

    def accept(self, token: int, remaining: int) -> int:
        """Consume a sampled token, or the ending's first one if the sampled token would leave no
        ending within `remaining - 1`. Returns the token written."""
        before = replace(self._quotes)
        self._consume(token)
        if self._ending is None:
            return token
        self._since += 1
        if self._path is not None and self._since == 1 and self._near_end(remaining):
            previous = self._path
            self._refresh()
            if self._path is None or not _fits(self._path, remaining - 1):
                self.matcher.rollback(1)
                self._quotes = before
                return self._follow(previous)
        return token

    def _near_end(self, remaining: int) -> bool:
        return self._path is not None and remaining <= 2 * self._longest + _WATCH

    def _refresh(self) -> None:
        assert self._ending is not None
        self._path = self._ending.find(self.matcher, self._quotes)
        self._since = 0
        if self._path is not None:
            self._longest = max(self._longest, len(self._path))

    def _follow(self, path: list[int]) -> int:
        if path == [self._vocab.eos]:
            self._whole = True
        else:
            self._closing = True
        self._following = path[1:]
        return self._consume(path[0])

    def finish(self, *, eos: bool) -> FinishReason:
        """Why the reply ended: at its end of turn (`eos`) or with its budget spent."""
        if self._closing:
            return "length"
        if self._whole:
            return "budget"
        if eos or self.matcher.is_stopped():
            return "eos"
        return "budget" if self.matcher.is_accepting() else "length"

    def _consume(self, token: int) -> int:
        if not self.matcher.consume_token(token):
            raise GrammarError(self.matcher.get_error() or f"token {token} violates the grammar")
        if token < len(self._vocab.pieces):
            self._quotes.feed(self._vocab.pieces[token])
        return token
