"""The engine protocol: the one narrow interface between the service and a model runtime.

Engines see token ids and sampling settings, never wire types. `generate` is an async iterator of
chunks; closing it early (a client that went away, a stop sequence that matched) cancels the
generation and frees what it held.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class Sampling:
    """Per-request sampling; `temperature == 0` means greedy."""

    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Bitmap:
    """An image as the engine reads it: decoded RGB pixels, row by row, 3 bytes a pixel.

    `digest` names the pixels (a hash of the size and the RGB bytes, never of the encoded file), so
    that the same picture sent as PNG, as JPEG of the same pixels or by URL is one image to the KV
    cache, and two pictures that differ anywhere are two."""

    width: int
    height: int
    rgb: bytes = field(repr=False, compare=False)  # the digest stands for it
    digest: str


@dataclass(frozen=True, slots=True)
class ImageTokens:
    """What one image costs in a prompt, in order: runs of text tokens the projector wraps or
    separates its parts with (Gemma 3's `<start_of_image>`, a tiling model's slice markers), and
    each part's count of image positions (its embeddings)."""

    pieces: tuple[tuple[int, ...] | int, ...]


@dataclass(frozen=True, slots=True)
class ImageSpan:
    """A part of an image inside a prompt's tokens: positions [start, start + count) hold the
    embeddings of part `part` of `bitmap`; the prompt's token ids there are
    `placeholders(bitmap.digest, count, part)`."""

    start: int
    count: int
    bitmap: Bitmap
    part: int = 0


def placeholders(digest: str, count: int, part: int = 0) -> tuple[int, ...]:
    """Token ids standing for an image part's positions: negative (no vocabulary id is), and drawn
    from the pixels' digest, so that prompts holding different images differ at the image's first
    position and a prefix match never takes one image's cells for another's."""
    if part:
        digest = hashlib.sha256(f"{digest}:{part}".encode()).hexdigest()
    words = [int(digest[i : i + 8], 16) & 0x7FFFFFFF for i in range(0, min(len(digest), 64), 8)] or [0]
    return tuple(-1 - words[i % len(words)] for i in range(count))


class ImageInputUnsupportedError(ValueError):
    """The engine's model has no projector: it cannot read images."""


@dataclass(frozen=True, slots=True)
class KeepPoint:
    """Keep the KV cells of the prompt's first `length` tokens for `ttl` seconds (pushed back on use)."""

    length: int
    ttl: float


@dataclass(eq=False, slots=True)
class Admission:
    """A place an engine has promised one request: its generations (every phase of the reply) are
    never refused for capacity. Taken before a response starts, so that a request is either refused
    with 529 or served; released when the reply ends, or if it never starts (idempotent)."""

    _on_release: Callable[[], None] = lambda: None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    released: bool = False

    def release(self) -> None:
        with self._lock:
            if self.released:
                return
            self.released = True
        self._on_release()


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """`namespace` scopes KV reuse: a request only reuses cells kept under its own namespace.

    `grammar`, when set, is an llguidance grammar (Lark dialect, `%json` schemas inline) that every
    sampled token must keep satisfying; once it is complete only end-of-turn may follow. vLLM and
    SGLang accept the same grammars, so a remote engine can honour it too.
    """

    tokens: tuple[int, ...]
    max_tokens: int
    sampling: Sampling = Sampling()
    namespace: str = ""
    keep: tuple[KeepPoint, ...] = ()
    grammar: str | None = None
    end_in_budget: bool = False
    background: bool = False  # batch work: served after every waiting interactive request
    admission: Admission | None = None  # the place `Engine.admit` promised; None: checked on submit
    images: tuple[ImageSpan, ...] = ()  # where `tokens` holds images (placeholders), in order


# `end_in_budget` (with a grammar): the reply must complete its grammar within `max_tokens` (and the
# context window). Near the end, a sampled token is only kept if the grammar can still be completed
# in the tokens left after it; otherwise the engine writes the shortest ending it knows and finishes
# with "length", since the budget is what ended the reply. Where the reply was already whole (its
# grammar complete) and only more of it (a further tool call) would not fit, it finishes with
# "budget": nothing written was cut.


class GrammarError(ValueError):
    """A grammar the engine cannot compile (the message says why)."""


# eos: the model ended its turn; length: max_tokens reached; context_full: no room left in the window;
# budget: a constrained reply was whole when max_tokens left no room for more of it.
FinishReason = Literal["eos", "length", "context_full", "budget"]


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """Text produced since the previous chunk (always whole UTF-8 characters) and the tokens it cost."""

    text: str
    tokens: int
    finish: FinishReason | None = None


@dataclass(frozen=True, slots=True)
class EngineInfo:
    name: str
    context_window: int
    chat_template: str
    bos_token: str
    eos_token: str
    bos_token_id: int
    add_bos: bool
    image_input: bool = False  # a projector is loaded: `image_tokens` works
    remote: bool = False  # served by another process, which can fail on its own


class Engine(Protocol):
    @property
    def info(self) -> EngineInfo: ...

    @property
    def healthy(self) -> bool:
        """Whether it can serve now (an upstream engine whose servers all fail cannot)."""
        ...

    async def tokenize(self, text: str, *, special: bool) -> list[int]:
        """The model's own tokens for `text`; `special` parses control tokens such as `<|im_end|>`."""
        ...

    async def image_tokens(self, bitmap: Bitmap) -> ImageTokens:
        """What `bitmap` costs in a prompt (exactly, as the projector will encode it); raises
        `ImageInputUnsupportedError` when the model reads no images."""
        ...

    def admit(self) -> Admission:
        """Promise a request a place (see `Admission`), or raise `OverloadedError` if there is none."""
        ...

    def check_grammar(self, grammar: str) -> None:
        """Compile `grammar` (cached for later requests); raise `GrammarError` if it cannot be."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]: ...

    def stats(self) -> dict[str, int | float]:
        """Counters for operators and tests: slots, queue, KV cells, kept prefixes."""
        ...

    async def aclose(self) -> None: ...
