"""LlamaCppEngine: the embedded engine, llama.cpp in-process with continuous batching.

The model loads once; one llama.cpp context holds a KV stream per slot (`Scheduler`, `Streams`),
and kept prefixes are saved in host RAM (`PrefixStore`). This class is the asyncio face of it: `generate`
submits a job to the scheduler thread and relays its chunks; closing the iterator cancels the job,
which frees its slot and cells at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import _internals
from llama_cpp._logger import set_verbose

from sijo.config import EngineConfig
from sijo.engines.base import (
    Admission,
    Bitmap,
    EngineInfo,
    GenerationChunk,
    GenerationRequest,
    ImageInputUnsupportedError,
    ImageTokens,
)
from sijo.engines.llama_cpp.constraint import Ending, Grammars, TokenMask
from sijo.engines.llama_cpp.cpu import extra_buffer_types_safe
from sijo.engines.llama_cpp.model_file import ModelFileError, resolve_model_path
from sijo.engines.llama_cpp.scheduler import EngineError, Job, Scheduler
from sijo.engines.llama_cpp.vision import Projector

__all__ = ["EngineError", "LlamaCppEngine"]


class LlamaCppEngine:
    def __init__(
        self,
        model: Any,
        ctx: Any,
        path: Path,
        config: EngineConfig,
        context_window: int,
        projector: Projector | None = None,
    ) -> None:
        self._model = model
        self._projector = projector
        self._ctx = ctx
        self._vocab = model.vocab
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._grammars = Grammars(self._vocab)
        self._ending: Ending | None = None
        self._tokenized: OrderedDict[tuple[bool, str], tuple[int, ...]] = OrderedDict()
        self._info = replace(
            self._read_info(path, context_window, config.chat_template), image_input=projector is not None
        )
        slots = self._slots = config.slots
        self._relay = _Relay()
        self.scheduler = Scheduler(
            ctx=ctx,
            vocab=self._vocab,
            piece=lambda token: self._piece(token, special=False),
            slots=slots,
            batch_size=llama_cpp.llama_n_batch(ctx),
            prefill_chunk=config.prefill_chunk,
            max_queue=config.max_queue,
            context_window=context_window,
            host_cache_bytes=config.host_cache_mb * 1024 * 1024,
            leftover_ttl=config.leftover_ttl,
            after_step=self._relay.flush,
            projector=projector,
        )

    @classmethod
    def load(cls, config: EngineConfig) -> LlamaCppEngine:
        path = resolve_model_path(config.path)
        threads = config.threads or os.cpu_count() or 1
        model = _load_model(path)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = config.slots * _stream_size(config, model.n_ctx_train())
        params.n_batch = config.batch_size
        params.n_ubatch = config.batch_size
        params.n_seq_max = config.slots
        params.kv_unified = False  # a stream per slot: a step attends only to its own cells
        params.n_threads = threads
        params.n_threads_batch = threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if config.flash_attention
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            model.close()
            raise EngineError(f"llama.cpp could not create a context of {params.n_ctx} tokens")
        # llama.cpp rounds a stream up to a multiple of 256 cells; a request never outgrows its own
        context_window = min(config.context_window or model.n_ctx_train(), llama_cpp.llama_n_ctx_seq(ctx))
        try:
            projector = (
                Projector.load(config.mmproj, model.model, threads, config.batch_size)
                if config.mmproj
                else None
            )
        except BaseException:
            llama_cpp.llama_free(ctx)
            model.close()
            raise
        return cls(model, ctx, path, config, context_window, projector)

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def healthy(self) -> bool:
        return True  # in this process: if it were down, so would Sijo be

    def _read_info(self, path: Path, context_window: int, template_file: Path | None) -> EngineInfo:
        metadata: dict[str, str] = self._model.metadata()
        template = metadata.get("tokenizer.chat_template", _CHATML)
        if template_file is not None:
            try:
                template = template_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ModelFileError(f"chat template file unreadable: {template_file}: {exc}") from exc
        bos = llama_cpp.llama_vocab_bos(self._vocab)
        eos = llama_cpp.llama_vocab_eos(self._vocab)
        return EngineInfo(
            name=_model_name(path),
            context_window=context_window,
            chat_template=template,
            bos_token=self._piece(bos, special=True).decode("utf-8", "replace") if bos >= 0 else "",
            eos_token=self._piece(eos, special=True).decode("utf-8", "replace") if eos >= 0 else "",
            bos_token_id=bos,
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and bos >= 0,
        )

    async def tokenize(self, text: str, *, special: bool) -> list[int]:
        data = text.encode("utf-8")
        if len(data) < _REMEMBER_BYTES:
            return self._tokenize(data, special)
        # Long texts (a system prompt, a document) come back again and again, typically with a
        # cache breakpoint: tokenising 35 KB costs ~20 ms, a large share of a warm request's TTFT.
        key = (special, text)
        cached = self._tokenized.get(key)
        if cached is not None:
            self._tokenized.move_to_end(key)
            return list(cached)
        if len(data) < _INLINE_TOKENIZE_BYTES:  # a few milliseconds at most: no thread hop
            tokens = self._tokenize(data, special)
        else:
            tokens = await asyncio.to_thread(self._tokenize, data, special)
        if len(data) <= _TOKENIZED_MAX_BYTES:
            self._tokenized[key] = tuple(tokens)
            while len(self._tokenized) > _TOKENIZED_TEXTS:
                self._tokenized.popitem(last=False)
        return tokens

    def _tokenize(self, data: bytes, special: bool) -> list[int]:
        tokens: list[int] = self._model.tokenize(data, False, special)
        return tokens

    async def image_tokens(self, bitmap: Bitmap) -> ImageTokens:
        if self._projector is None:
            raise ImageInputUnsupportedError(f"{self._info.name} has no projector (mmproj)")
        return await asyncio.to_thread(self._projector.tokens, bitmap)

    def admit(self) -> Admission:
        return self.scheduler.admit()

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        job = self.job(request)
        async for chunk in self.run(job):
            yield chunk

    def _endings(self) -> Ending:
        if self._ending is None:
            pieces = [self._piece(token, special=False) for token in range(self._n_vocab)]
            self._ending = Ending.build(pieces, self._grammars.eos_token())
        return self._ending

    def check_grammar(self, grammar: str) -> None:
        """Compile `grammar` (callers run this on a worker thread). The first call also builds
        what `job` needs for every grammar — the vocabulary's pieces, half a second — so that no
        request pays for it on the event loop."""
        self._grammars.matcher(grammar)
        self._endings()

    def job(self, request: GenerationRequest) -> Job:
        mask = None
        if request.grammar is not None:
            mask = TokenMask(
                self._grammars.matcher(request.grammar),
                self._n_vocab,
                self._endings(),
                end_in_budget=request.end_in_budget,
            )
        return Job(
            mask=mask,
            tokens=np.asarray(request.tokens, dtype=np.int32),
            max_tokens=request.max_tokens,
            sampling=request.sampling,
            emit=_discard,
            namespace=request.namespace,
            keep=tuple(sorted(request.keep, key=lambda point: point.length)),
            background=request.background,
            admitted=request.admission is not None,
            images=request.images,
        )

    async def run(self, job: Job) -> AsyncGenerator[GenerationChunk, None]:
        """Submit `job` and relay its chunks; leaving early cancels it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()

        def emit(item: GenerationChunk | BaseException) -> None:
            if not job.cancelled.is_set():  # nobody is listening any more
                self._relay.add(loop, queue, item)

        job.emit = emit
        self.scheduler.submit(job)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish is not None:
                    return
        finally:
            self.scheduler.cancel(job)

    def stats(self) -> dict[str, int | float]:
        projector = self._projector
        return {
            **self.scheduler.snapshot,
            "images_encoded": projector.encoded if projector is not None else 0,
            "image_encode_seconds": projector.encode_seconds if projector is not None else 0.0,
            "waiting": self.scheduler.waiting(),
            "admitted": self.scheduler.admitted(),
            "slots": self._slots,
            "kv_size": llama_cpp.llama_n_ctx(self._ctx),
        }

    def positions_held(self) -> dict[int, int]:
        """Positions each sequence holds, as llama.cpp reports them (tests check the streams' account)."""
        memory = llama_cpp.llama_get_memory(self._ctx)
        held = {seq: llama_cpp.llama_memory_seq_pos_max(memory, seq) + 1 for seq in range(self._slots)}
        return {seq: count for seq, count in held.items() if count > 0}

    async def aclose(self) -> None:
        await asyncio.to_thread(self.scheduler.stop)
        if self._projector is not None:
            self._projector.close()
        llama_cpp.llama_free(self._ctx)
        self._model.close()

    def _piece(self, token: int, *, special: bool) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, special)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, -size, 0, special)
        return buffer.raw[:size]


_INLINE_TOKENIZE_BYTES = 8192  # shorter texts are tokenised on the event loop, longer on a thread
_REMEMBER_BYTES = 1024  # texts at least this long have their tokens remembered ...
_TOKENIZED_MAX_BYTES = 1 << 20  # ... up to this size ...
_TOKENIZED_TEXTS = 64  # ... the most recently used 64 of them
_DEFAULT_KV_CAP = 65536  # default KV cache, all streams together, unless a window or size is asked


def _stream_size(config: EngineConfig, trained: int) -> int:
    """KV cells per slot: `kv_size` shared out, else the context window asked for (or the trained
    one, within the default cap)."""
    if config.kv_size is not None:
        return max(1, config.kv_size // config.slots)
    if config.context_window is not None:
        return min(config.context_window, trained)
    return min(trained, max(_DEFAULT_KV_CAP // config.slots, 256))


def _load_model(path: Path) -> Any:
    """The model's weights and vocabulary, placed only in buffer types safe on this CPU (`cpu.py`)."""
    set_verbose(False)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = extra_buffer_types_safe()
    try:
        return _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
    except ValueError as exc:  # llama.cpp could not read it
        raise ModelFileError(f"llama.cpp could not load {path}: {exc}") from exc


def _discard(_item: GenerationChunk | BaseException) -> None:
    return None


_Item = GenerationChunk | BaseException


class _Relay:
    """Carries one step's chunks to the event loop(s) in one wake-up per loop, not one per chunk:
    on 2 cores, every wake-up of the event loop thread takes CPU from the decode threads."""

    def __init__(self) -> None:
        self._items: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[_Item], _Item]] = []

    def add(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[_Item], item: _Item) -> None:
        self._items.append((loop, queue, item))

    def flush(self) -> None:
        items, self._items = self._items, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[_Item], _Item]]] = {}
        for loop, queue, item in items:
            by_loop.setdefault(loop, []).append((queue, item))
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
                loop.call_soon_threadsafe(_deliver, batch)


def _deliver(batch: list[tuple[asyncio.Queue[_Item], _Item]]) -> None:
    for queue, item in batch:
        queue.put_nowait(item)


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
