"""Scheduler: continuous batching over one llama.cpp context, on one thread of its own.

Up to `slots` requests run at once, each in its own llama.cpp sequence and KV stream (`kvstore`).
Every step builds one batch:
one token for each sequence that is generating, plus at most `prefill_chunk` prompt tokens of the
sequences still reading their prompts, so a long prompt delays the others by one chunk at most.
New requests join between steps; a request that is cancelled leaves at the next step and its
cells are freed. Requests beyond the slots wait in a bounded queue; a full queue refuses at once.

Before prefilling, a request takes the stream that holds the longest prefix of its prompt in its
namespace (a finished request's cells, in place) or copies in a kept prefix from host RAM
(`PrefixStore`), whichever leaves less to prefill, and decodes only the rest. Prefill chunks end at
the request's cache breakpoints, so that a stream holds exactly a breakpoint's prefix when it is
kept.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from sijo.engines.base import (
    Admission,
    FinishReason,
    GenerationChunk,
    GrammarError,
    ImageSpan,
    KeepPoint,
    Sampling,
)
from sijo.engines.llama_cpp.constraint import TokenMask
from sijo.engines.llama_cpp.kvstore import Placement, PrefixStore, Stream, Streams, Tokens
from sijo.engines.llama_cpp.sampling import sampler_chain
from sijo.engines.llama_cpp.text import Utf8Stream
from sijo.engines.llama_cpp.vision import Projector, ProjectorError
from sijo.errors import OverloadedError

Emit = Callable[[GenerationChunk | BaseException], None]


class EngineError(Exception):
    """llama.cpp failed to decode (an engine fault, not the client's)."""


@dataclass(eq=False, slots=True)
class Job:
    tokens: Tokens
    max_tokens: int
    sampling: Sampling
    emit: Emit
    namespace: str = ""
    keep: tuple[KeepPoint, ...] = ()
    forced: tuple[int, ...] | None = None  # teacher forcing: feed these instead of sampling
    mask: TokenMask | None = None  # constrained decoding: only tokens the grammar allows
    logits: list[npt.NDArray[np.float32]] | None = None  # filled with each step's logits if set
    cancelled: threading.Event = field(default_factory=threading.Event)
    reused: int = 0  # prompt tokens whose cells came from the prefix store
    background: bool = False  # batch work: waits behind every interactive request
    admitted: bool = False  # its request holds an admission: never refused for capacity
    images: tuple[ImageSpan, ...] = ()  # prompt positions that hold images, in order

    def image_at(self, position: int) -> ImageSpan | None:
        return next((span for span in self.images if span.start == position), None)

    def text_until(self, position: int) -> int:
        """Where the run of text tokens from `position` ends: the next image, or the prompt's end."""
        starts = [span.start for span in self.images if span.start >= position]
        return min(starts) if starts else int(self.tokens.shape[0])

    def next_keep(self, position: int) -> int:
        """The first cache breakpoint after `position` (else the prompt's end): prefill stops there."""
        ends = [point.length for point in self.keep if point.length > position]
        return min(ends) if ends else int(self.tokens.shape[0])

    def outside_images(self, length: int) -> int:
        """`length` moved back to an image's start if it falls inside that image."""
        for span in self.images:
            if span.start < length < span.start + span.count:
                return span.start
        return length


@dataclass(eq=False, slots=True)
class _Slot:
    job: Job
    stream: Stream
    sampler: Any
    pos: int = 0  # positions decoded into the sequence
    generated: list[int] = field(default_factory=list)
    text: Utf8Stream = field(default_factory=Utf8Stream)
    kept: int = 0  # keep points handled so far

    @property
    def seq(self) -> int:
        return self.stream.seq

    @property
    def prefilling(self) -> bool:
        return self.pos < int(self.job.tokens.shape[0])


@dataclass(slots=True)
class SchedulerStats:
    steps: int = 0
    step_seconds: float = 0.0
    decode_seconds: float = 0.0
    prompt_tokens: int = 0  # prompt tokens decoded
    reused_tokens: int = 0  # prompt tokens taken from kept cells instead
    generated_tokens: int = 0
    masked_tokens: int = 0  # tokens sampled under a grammar
    mask_seconds: float = 0.0  # time spent computing and applying their masks


class Scheduler:
    def __init__(
        self,
        *,
        ctx: Any,
        vocab: Any,
        piece: Callable[[int], bytes],
        slots: int,
        batch_size: int,
        prefill_chunk: int,
        max_queue: int,
        context_window: int,
        host_cache_bytes: int,
        leftover_ttl: float,
        after_step: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        projector: Projector | None = None,
    ) -> None:
        self._ctx = ctx
        self._projector = projector
        self._vocab = vocab
        self._piece = piece
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._slots_max = slots
        self._batch_size = batch_size
        self._chunk = max(1, min(prefill_chunk, batch_size - slots))
        self._max_queue = max_queue
        self._window = context_window
        self._leftover_ttl = leftover_ttl
        self._after_step = after_step or (lambda: None)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._batch = llama_cpp.llama_batch_init(batch_size, 0, 1)
        self.streams = Streams(ctx, self._memory, slots, clock)
        self.store = PrefixStore(ctx, self._memory, clock=clock, host_budget_bytes=host_cache_bytes)
        self.stats = SchedulerStats()
        self.snapshot: dict[str, int | float] = {}
        self._active: list[_Slot] = []
        self._waiting: deque[Job] = deque()
        self._admitted = 0  # admissions held (requests promised a place, running, queued or between)
        self._cond = threading.Condition()
        self._stopping = False
        self._publish()
        self._thread = threading.Thread(target=self._loop, name="sijo-scheduler", daemon=True)
        self._thread.start()

    # --- called from other threads -------------------------------------------------------------

    def admit(self) -> Admission:
        with self._cond:
            self._check_capacity()
            self._admitted += 1
        return Admission(self._release_admission)

    def _release_admission(self) -> None:
        with self._cond:
            self._admitted -= 1

    def submit(self, job: Job) -> None:
        with self._cond:
            if not job.admitted:
                self._check_capacity()
            self._waiting.append(job)
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        job.cancelled.set()
        with self._cond:
            self._cond.notify()

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def admitted(self) -> int:
        with self._cond:
            return self._admitted

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        for slot in self._active:
            llama_cpp.llama_sampler_free(slot.sampler)
        llama_cpp.llama_batch_free(self._batch)

    def _check_capacity(self) -> None:
        # An admitted request counts as queued unless its job is running: between its phases, or
        # before its first job is submitted, it has a place in the queue all the same.
        running_admitted = sum(1 for slot in self._active if slot.job.admitted)
        queued = self._admitted - running_admitted + sum(1 for job in self._waiting if not job.admitted)
        if queued >= self._max_queue and len(self._active) >= self._slots_max:
            raise OverloadedError(
                "Overloaded: every slot is busy and the queue is full; retry shortly",
                headers={"retry-after": "1"},
            )

    # --- the scheduler thread ------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._active and not self._waiting:
                    self._cond.wait(timeout=1.0)
                    self._expire()
                    self._publish()
                if self._stopping:
                    return
                admitted = self._take_waiting()
            try:
                self._reap()
                self._expire()
                for job in admitted:
                    self._admit(job)
                if self._active:
                    self._step()
            except BaseException as exc:  # a fault fails the running requests, never the thread
                for slot in list(self._active):
                    slot.job.emit(exc)
                    self._release(slot, keep=False)
            self._after_step()
            self._publish()

    def _publish(self) -> None:
        """Copy the counters for other threads (they must not walk structures this thread changes)."""
        stats = self.stats
        store = self.store
        self.snapshot = {
            "running": len(self._active),
            "kv_cells_used": self.streams.idle_cells() + sum(slot.pos for slot in self._active),
            "resident_streams": self.streams.resident(),
            "kept_prefixes": len(store.entries),
            "host_bytes": store.host_bytes(),
            "prefixes_saved": store.saved,
            "prefixes_restored": store.restored,
            "prefix_copy_seconds": store.copy_seconds,
            "steps": stats.steps,
            "step_seconds": stats.step_seconds,
            "decode_seconds": stats.decode_seconds,
            "prompt_tokens": stats.prompt_tokens,
            "reused_tokens": stats.reused_tokens,
            "generated_tokens": stats.generated_tokens,
            "masked_tokens": stats.masked_tokens,
            "mask_seconds": stats.mask_seconds,
        }

    def _take_waiting(self) -> list[Job]:
        """Fill free slots from the queue, interactive requests before background ones (batches)."""
        waiting = sorted((job for job in self._waiting if not job.cancelled.is_set()), key=_is_background)
        room = max(0, self._slots_max - len(self._active))
        self._waiting = deque(waiting[room:])
        return waiting[:room]

    def _expire(self) -> None:
        self.store.expire()
        self.streams.expire()

    def _reap(self) -> None:
        for slot in [s for s in self._active if s.job.cancelled.is_set()]:
            self._release(slot, keep=False)

    def _admit(self, job: Job) -> None:
        if job.cancelled.is_set():
            return
        last = int(job.tokens.shape[0]) - 1  # the prompt's last token is decoded for its logits

        def usable(shared: int) -> int:
            return job.outside_images(min(shared, last))

        host = self.store.best(job.namespace, job.tokens)
        placement = self.streams.place(job.namespace, job.tokens, host, usable)
        if placement.entry is not None and not self.store.restore(placement.entry, placement.stream):
            placement = Placement(placement.stream, 0, None)
        self.streams.take(placement, job.namespace, job.tokens)
        slot = _Slot(job, placement.stream, sampler_chain(job.sampling))
        slot.pos = job.reused = placement.reuse
        self.stats.reused_tokens += placement.reuse
        self._active.append(slot)
        self._keep_reached(slot)

    def _step(self) -> None:
        started = time.perf_counter()
        self._decode_image()
        plan = self._plan()
        if not plan:  # this step only decoded an image
            self.stats.steps += 1
            self.stats.step_seconds += time.perf_counter() - started
            return
        outputs = self._fill(plan)
        decode_started = time.perf_counter()
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        self.stats.decode_seconds += time.perf_counter() - decode_started
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status}")
        for slot, count in plan:
            if slot.prefilling:
                self.stats.prompt_tokens += count
            slot.pos += count
            self._keep_reached(slot)
        for slot, index in outputs:
            self._sample(slot, index)
        self.stats.steps += 1
        self.stats.step_seconds += time.perf_counter() - started

    def _decode_image(self) -> None:
        """Decode the first image a prefilling slot has reached (one a step: an image is a prefill
        chunk of its own, written from its embeddings, between the batches of text)."""
        for slot in self._active:
            span = slot.job.image_at(slot.pos) if slot.prefilling else None
            if span is None:
                continue
            assert self._projector is not None, "images reach only an engine with a projector"
            decode_started = time.perf_counter()
            try:
                taken = self._projector.decode(self._ctx, span, slot.seq, self._batch_size)
            except ProjectorError as exc:  # fails this request only
                slot.job.emit(EngineError(str(exc)))
                self._release(slot, keep=False)
                return
            self.stats.decode_seconds += time.perf_counter() - decode_started
            self.stats.prompt_tokens += taken
            slot.pos += taken
            self._keep_reached(slot)
            return

    def _plan(self) -> list[tuple[_Slot, int]]:
        """(slot, tokens to decode) for this step: a token for each generating slot, and one prefill
        chunk (which stops where an image starts, images being decoded on their own, and at a cache
        breakpoint), in the order of the slots' sequence ids: llama.cpp gives each run of
        consecutive ids its own micro-batch."""
        plan = [(slot, 1) for slot in self._active if not slot.prefilling]
        budget = min(self._chunk, self._batch_size - len(plan))
        for slot in self._active:
            if slot.prefilling and budget > 0:
                job = slot.job
                count = min(budget, job.text_until(slot.pos) - slot.pos, job.next_keep(slot.pos) - slot.pos)
                if count > 0:
                    plan.append((slot, count))
                    budget -= count
        return sorted(plan, key=lambda item: item[0].seq)

    def _fill(self, plan: list[tuple[_Slot, int]]) -> list[tuple[_Slot, int]]:
        batch = self._batch
        outputs: list[tuple[_Slot, int]] = []
        i = 0
        for slot, count in plan:
            if slot.prefilling:
                tokens = slot.job.tokens[slot.pos : slot.pos + count].tolist()
            else:
                tokens = [slot.generated[-1]]
            for offset, token in enumerate(tokens):
                batch.token[i] = token
                batch.pos[i] = slot.pos + offset
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = slot.seq
                batch.logits[i] = 0
                i += 1
            if slot.pos + count >= slot.job.tokens.shape[0]:  # the prompt is done: sample next
                batch.logits[i - 1] = 1
                outputs.append((slot, i - 1))
        batch.n_tokens = i
        return outputs

    def _sample(self, slot: _Slot, index: int) -> None:
        job = slot.job
        if job.logits is not None:
            raw = llama_cpp.llama_get_logits_ith(self._ctx, index)
            job.logits.append(np.ctypeslib.as_array(raw, shape=(self._n_vocab,)).copy())
        if job.forced is not None and len(slot.generated) < len(job.forced):
            token = job.forced[len(slot.generated)]
        elif job.mask is not None:
            try:
                token = self._sample_masked(job.mask, slot, index)
            except GrammarError as exc:  # fails this request only
                job.emit(EngineError(f"constrained decoding failed: {exc}"))
                self._release(slot, keep=False)
                return
        else:
            token = llama_cpp.llama_sampler_sample(slot.sampler, self._ctx, index)
        slot.generated.append(token)
        self.stats.generated_tokens += 1
        produced = len(slot.generated)
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            finish: FinishReason = "eos" if job.mask is None else job.mask.finish(eos=True)
            self._finish(slot, GenerationChunk(slot.text.flush(), 1, finish))
            return
        text = slot.text.feed(self._piece(token))
        if produced >= job.max_tokens:
            finish = "length" if job.mask is None else job.mask.finish(eos=False)
            self._finish(slot, GenerationChunk(text + slot.text.flush(), 1, finish))
        elif job.tokens.shape[0] + produced >= self._window:
            self._finish(slot, GenerationChunk(text + slot.text.flush(), 1, "context_full"))
        else:
            job.emit(GenerationChunk(text, 1))

    def _sample_masked(self, mask: TokenMask, slot: _Slot, index: int) -> int:
        started = time.perf_counter()
        job = slot.job
        produced = len(slot.generated)
        # An ending's end of turn costs no budget (`constraint._fits`), but the window must still hold
        # the token that ends the turn: a reply that fills the window stops as `context_full`.
        room = self._window - int(job.tokens.shape[0]) - produced - 1
        remaining = min(job.max_tokens - produced, room)
        token = mask.forced(remaining)
        if token is None:
            raw = llama_cpp.llama_get_logits_ith(self._ctx, index)
            mask.apply(np.ctypeslib.as_array(raw, shape=(self._n_vocab,)))
            masked = time.perf_counter()
            sampled: int = llama_cpp.llama_sampler_sample(slot.sampler, self._ctx, index)
            sampling = time.perf_counter() - masked
            token = mask.accept(sampled, remaining)
        else:
            sampling = 0.0
        self.stats.mask_seconds += time.perf_counter() - started - sampling
        self.stats.masked_tokens += 1
        return token

    def _finish(self, slot: _Slot, last: GenerationChunk) -> None:
        """Free the slot first, so that whoever reads the last chunk sees the slot already free."""
        self._release(slot, keep=True)
        slot.job.emit(last)

    def _keep_reached(self, slot: _Slot) -> None:
        job = slot.job
        while slot.kept < len(job.keep) and job.keep[slot.kept].length <= slot.pos:
            point = job.keep[slot.kept]
            slot.stream.tokens = job.tokens[: slot.pos]
            self.store.keep(job.namespace, job.tokens[: point.length], slot.stream, point.ttl)
            slot.kept += 1

    def _release(self, slot: _Slot, *, keep: bool) -> None:
        self._active.remove(slot)
        llama_cpp.llama_sampler_free(slot.sampler)
        decoded = np.concatenate([slot.job.tokens, np.asarray(slot.generated, dtype=np.int32)])[: slot.pos]
        self.streams.release(slot.stream, decoded, self._leftover_ttl if keep else 0.0)


def _is_background(job: Job) -> bool:
    return job.background
