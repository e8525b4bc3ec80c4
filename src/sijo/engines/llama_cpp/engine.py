"""LlamaCppEngine: one llama.cpp context, one sequence at a time, driven from a worker thread.

The decode loop uses llama.cpp's low-level API and its C sampler chain, so no vocabulary-sized work
happens in Python per token. The KV cells of the previous request stay in the context; a new
request that shares a prefix with them (the next turn of a conversation) decodes only the rest.
Requests queue on the engine's single worker thread. Closing the `generate` iterator sets a flag
the worker checks before every decode step, so a client that leaves stops its generation.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import llama_cpp

from sijo.config import EngineConfig
from sijo.engines.base import EngineInfo, GenerationChunk, GenerationRequest, Sampling
from sijo.engines.llama_cpp.model_file import resolve_model_path
from sijo.engines.llama_cpp.text import Utf8Stream


class EngineError(Exception):
    """llama.cpp failed to decode (an engine fault, not the client's)."""


class LlamaCppEngine:
    def __init__(self, llama: Any, path: Path, batch_size: int) -> None:
        self._llama = llama
        self._ctx = llama._ctx.ctx
        self._vocab = llama._model.vocab
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch_size = batch_size
        self._batch = llama_cpp.llama_batch_init(batch_size, 0, 1)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sijo-llama")
        self._cached: list[int] = []  # tokens whose KV cells sit in sequence 0
        self._info = self._read_info(path)

    @classmethod
    def load(cls, config: EngineConfig) -> LlamaCppEngine:
        path = resolve_model_path(config.path)
        threads = config.threads or os.cpu_count() or 1
        llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=config.context_window or 0,
            n_batch=config.batch_size,
            n_threads=threads,
            n_threads_batch=threads,
            flash_attn=config.flash_attention,
            verbose=False,
        )
        return cls(llama, path, min(config.batch_size, llama.n_batch))

    @property
    def info(self) -> EngineInfo:
        return self._info

    def _read_info(self, path: Path) -> EngineInfo:
        metadata: dict[str, str] = self._llama.metadata
        bos = llama_cpp.llama_vocab_bos(self._vocab)
        eos = llama_cpp.llama_vocab_eos(self._vocab)
        return EngineInfo(
            name=_model_name(path),
            context_window=self._llama.n_ctx(),
            chat_template=metadata.get("tokenizer.chat_template", _CHATML),
            bos_token=self._piece(bos, special=True).decode("utf-8", "replace") if bos >= 0 else "",
            eos_token=self._piece(eos, special=True).decode("utf-8", "replace") if eos >= 0 else "",
            bos_token_id=bos,
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and bos >= 0,
        )

    async def tokenize(self, text: str, *, special: bool) -> list[int]:
        data = text.encode("utf-8")
        tokens: list[int] = await asyncio.to_thread(
            self._llama.tokenize, data, add_bos=False, special=special
        )
        return tokens

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: GenerationChunk | BaseException) -> None:
            if not cancelled.is_set():  # nobody is listening any more
                loop.call_soon_threadsafe(queue.put_nowait, item)

        self._worker.submit(self._run, request, emit, cancelled)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish is not None:
                    return
        finally:
            cancelled.set()

    async def aclose(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
        llama_cpp.llama_batch_free(self._batch)
        self._llama.close()

    # --- worker thread -------------------------------------------------------------------------

    def _run(
        self,
        request: GenerationRequest,
        emit: Callable[[GenerationChunk | BaseException], None],
        cancelled: threading.Event,
    ) -> None:
        try:
            for chunk in self._decode(request, cancelled):
                emit(chunk)
        except BaseException as exc:  # delivered to the awaiting request, never lost in the thread
            emit(exc)

    def _decode(self, request: GenerationRequest, cancelled: threading.Event) -> Iterator[GenerationChunk]:
        tokens = list(request.tokens)
        if not self._prefill(tokens, cancelled):
            return
        sampler = _sampler_chain(request.sampling)
        text = Utf8Stream()
        window = self._info.context_window
        produced = 0
        try:
            while not cancelled.is_set():
                if produced == request.max_tokens:
                    yield GenerationChunk(text.flush(), 0, "length")
                    return
                if len(tokens) + produced >= window:
                    yield GenerationChunk(text.flush(), 0, "context_full")
                    return
                token = llama_cpp.llama_sampler_sample(sampler, self._ctx, -1)
                produced += 1
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    yield GenerationChunk(text.flush(), 1, "eos")
                    return
                yield GenerationChunk(text.feed(self._piece(token, special=False)), 1)
                self._decode_batch([token], len(self._cached), logits_last=True)
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def _prefill(self, tokens: list[int], cancelled: threading.Event) -> bool:
        """Bring sequence 0 to `tokens`, reusing the common prefix; False if cancelled midway."""
        if cancelled.is_set():  # gone while queued: keep the cache for the next request
            return False
        common = _common_prefix(self._cached, tokens)
        common = min(common, len(tokens) - 1)  # the last prompt token must be decoded for logits
        llama_cpp.llama_memory_seq_rm(self._memory, 0, common, -1)
        del self._cached[common:]
        for start in range(common, len(tokens), self._batch_size):
            if cancelled.is_set():
                return False
            piece = tokens[start : start + self._batch_size]
            self._decode_batch(piece, start, logits_last=start + len(piece) == len(tokens))
        return True

    def _decode_batch(self, tokens: list[int], position: int, *, logits_last: bool) -> None:
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = position + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 0
        batch.logits[len(tokens) - 1] = 1 if logits_last else 0
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            llama_cpp.llama_memory_seq_rm(self._memory, 0, position, -1)
            raise EngineError(f"llama_decode failed with status {status}")
        self._cached += tokens

    def _piece(self, token: int, *, special: bool) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, special)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, -size, 0, special)
        return buffer.raw[:size]


def _sampler_chain(sampling: Sampling) -> Any:
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if sampling.temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if sampling.top_k:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(sampling.top_k))
    if sampling.top_p is not None and sampling.top_p < 1.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(sampling.temperature))
    seed = llama_cpp.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _model_name(path: Path) -> str:
    """`SmolLM2-135M-Instruct.Q4_1.gguf` → `smollm2-135m-instruct` (the quantisation is dropped)."""
    return re.sub(r"[^a-z0-9]+", "-", path.name.split(".")[0].lower()).strip("-") or "local-model"


# Used when a GGUF carries no chat template.
_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
