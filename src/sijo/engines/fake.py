"""A fake engine for tests: replays queued replies, one token per character, with a ChatML template."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable

from sijo.engines.base import (
    Admission,
    Bitmap,
    EngineInfo,
    GenerationChunk,
    GenerationRequest,
    ImageInputUnsupportedError,
    ImageTokens,
)
from sijo.errors import OverloadedError

CHATML = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DEFAULT_REPLY = ("Hello", " from", " the", " fake", " engine", ".")


class FakeEngine:
    """Each reply is a list of pieces; every piece costs one token. Tokens are characters."""

    def __init__(
        self,
        *,
        context_window: int = 4096,
        delay: float = 0.0,
        capacity: int | None = None,
        image_tokens: int | None = None,
    ) -> None:
        self._info = EngineInfo(
            name="fake",
            context_window=context_window,
            chat_template=CHATML,
            bos_token="",
            eos_token="<|im_end|>",
            bos_token_id=0,
            add_bos=False,
            image_input=image_tokens is not None,
        )
        self._image_tokens = image_tokens  # what every image costs; None: no images
        self._replies: deque[tuple[str, ...]] = deque()
        self.delay = delay
        self.capacity = capacity  # requests at once; None: unbounded
        self.requests: list[GenerationRequest] = []
        self.grammars: list[str] = []
        self.cancelled = 0
        self.active = 0
        self.admitted = 0  # admissions held
        self.healthy = True  # tests mark it down to see requests go to the next route

    @property
    def info(self) -> EngineInfo:
        return self._info

    def enqueue(self, pieces: Iterable[str]) -> None:
        self._replies.append(tuple(pieces))

    async def tokenize(self, text: str, *, special: bool) -> list[int]:  # noqa: ARG002
        return [ord(ch) for ch in text]

    async def image_tokens(self, bitmap: Bitmap) -> ImageTokens:  # noqa: ARG002
        if self._image_tokens is None:
            raise ImageInputUnsupportedError("the fake engine reads no images")
        return ImageTokens(((ord("["),), self._image_tokens, (ord("]"),)))

    def admit(self) -> Admission:
        self._check_capacity()
        self.admitted += 1
        return Admission(self._release)

    def _release(self) -> None:
        self.admitted -= 1

    def _check_capacity(self) -> None:
        """`capacity` requests at once: running ones, and those promised a place."""
        if self.capacity is not None and max(self.active, self.admitted) >= self.capacity:
            raise OverloadedError("Overloaded", headers={"retry-after": "1"})

    def check_grammar(self, grammar: str) -> None:
        self.grammars.append(grammar)  # the fake does not constrain: its replies are scripted

    def stats(self) -> dict[str, int | float]:
        return {"running": self.active, "requests": len(self.requests), "cancelled": self.cancelled}

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        if request.admission is None:
            self._check_capacity()
        self.requests.append(request)
        pieces = self._replies.popleft() if self._replies else DEFAULT_REPLY
        room = self._info.context_window - len(request.tokens)
        self.active += 1
        produced = 0
        try:
            for piece in (*pieces, None):
                if produced == request.max_tokens:
                    yield GenerationChunk("", 0, "length")
                    return
                if produced == room:
                    yield GenerationChunk("", 0, "context_full")
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                produced += 1
                if piece is None:  # the end-of-turn token
                    yield GenerationChunk("", 1, "eos")
                    return
                yield GenerationChunk(piece, 1)
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        return None
