"""Where KV cells live: one stream per slot, and the prefixes kept in host RAM.

The KV cache has one stream per slot (`kv_unified = false`): sequence `i` lives in stream `i`, and
a decode step attends only to its own stream's cells, so no request pays for another's cells (in a
unified cache, llama.cpp's CPU attention scans every used cell for every query).

- A *stream* remembers what its cells hold (`Stream.tokens`, in a namespace) after its request
  ends, for `leftover_ttl` seconds: a follow-up of the same namespace that shares a prefix with it
  continues there, in place.
- A prefix a request asks to keep (a cache breakpoint) is saved once to host RAM
  (`llama_state_seq_get_data`) and copied into a stream when a later request of the same
  namespace needs it (`llama_state_seq_set_data`): a copy of milliseconds against seconds of
  prefill, and concurrent requests on the same prefix each get their own copy. Entries live until
  their deadline, which each use pushes back; beyond the host budget the soonest to expire go.

`place` picks a request's stream: the one that leaves the fewest prompt tokens to prefill, then the
one that keeps the running sequences' ids contiguous (llama.cpp splits a step into one micro-batch
per run of consecutive sequence ids when streams are separate, and every micro-batch reads all
the weights again).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

Tokens = npt.NDArray[np.int32]

_EMPTY: Tokens = np.zeros(0, dtype=np.int32)
_GAP_TOKENS = 256  # a new run of sequence ids, priced in prompt tokens to prefill
_COPY_TOKENS = 512  # copying this many cells from host RAM costs about one token's prefill ...
_COPY_FIXED = 16  # ... and any copy about this many (a few shared template tokens are not worth one)


def common_prefix(a: Tokens, b: Tokens) -> int:
    n = min(a.shape[0], b.shape[0])
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else int(n)


@dataclass(eq=False, slots=True)
class Stream:
    seq: int  # the llama.cpp sequence id, and the index of its stream
    namespace: str = ""
    tokens: Tokens = field(default_factory=lambda: _EMPTY)  # what positions [0, n) of its cells hold
    busy: bool = False
    idle_until: float = 0.0  # an idle stream's cells are cleared after this
    last_used: float = 0.0

    @property
    def length(self) -> int:
        return int(self.tokens.shape[0])


@dataclass(eq=False, slots=True)
class Entry:
    namespace: str
    tokens: Tokens  # the positions the saved cells hold
    saved: bytearray = field(repr=False)
    expires_at: float
    last_used: float

    @property
    def length(self) -> int:
        return int(self.tokens.shape[0])


@dataclass(frozen=True, slots=True)
class Placement:
    stream: Stream
    reuse: int  # prompt tokens whose cells the request starts with
    entry: Entry | None  # copied from host RAM into the stream first; None: in place


class Streams:
    """The slots' streams and what each holds."""

    def __init__(self, ctx: Any, memory: Any, count: int, clock: Callable[[], float]) -> None:
        self._ctx = ctx
        self._memory = memory
        self._clock = clock
        self.all = [Stream(seq) for seq in range(count)]

    def idle_cells(self) -> int:
        """Cells idle streams hold (a busy stream's count is its request's position)."""
        return sum(stream.length for stream in self.all if not stream.busy)

    def resident(self) -> int:
        """Idle streams whose cells are kept for a follow-up."""
        return sum(1 for stream in self.all if not stream.busy and stream.length)

    def place(
        self, namespace: str, tokens: Tokens, host: Entry | None, usable: Callable[[int], int]
    ) -> Placement:
        """The cheapest free stream for a request, and what it reuses (`usable` turns a shared
        prefix's length into what the request may take of it: never all of its prompt, never half
        an image)."""
        busy = {stream.seq for stream in self.all if stream.busy}
        runs = _runs(busy)
        best: tuple[tuple[int, int, float], Placement] | None = None
        from_host = usable(common_prefix(host.tokens, tokens)) if host is not None else 0
        for stream in self.all:
            if stream.busy:
                continue
            mine = stream.namespace == namespace and stream.length > 0
            in_place = usable(common_prefix(stream.tokens, tokens)) if mine else 0
            gap = (_runs(busy | {stream.seq}) - runs) * _GAP_TOKENS
            options = [Placement(stream, in_place, None)]
            if host is not None and from_host > in_place:
                options.append(Placement(stream, from_host, host))
            for option in options:
                copy = _COPY_FIXED + option.entry.length // _COPY_TOKENS if option.entry is not None else 0
                cost = int(tokens.shape[0]) - option.reuse + gap + copy
                # then: do not overwrite what another request may want; then the longest idle
                key = (cost, int(option.reuse == 0 and stream.length > 0), stream.last_used)
                if best is None or key < best[0]:
                    best = (key, option)
        assert best is not None, "a request is placed only when a slot is free"
        return best[1]

    def take(self, placement: Placement, namespace: str, tokens: Tokens) -> None:
        """Make `placement.stream` hold `tokens[:reuse]` (its cells must already) and mark it busy."""
        stream = placement.stream
        if placement.reuse < stream.length or placement.reuse == 0:
            llama_cpp.llama_memory_seq_rm(self._memory, stream.seq, placement.reuse, -1)
        stream.namespace = namespace
        stream.tokens = tokens[: placement.reuse]
        stream.busy = True
        stream.last_used = self._clock()

    def release(self, stream: Stream, tokens: Tokens, ttl: float) -> None:
        """The request in `stream` ended with `tokens` decoded: keep them `ttl` seconds, if any."""
        stream.busy = False
        stream.last_used = self._clock()
        if ttl > 0 and tokens.shape[0] > 0:
            stream.tokens = tokens
            stream.idle_until = stream.last_used + ttl
        else:
            self.clear(stream)

    def clear(self, stream: Stream) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, stream.seq, -1, -1)
        stream.tokens = _EMPTY
        stream.namespace = ""

    def expire(self) -> None:
        now = self._clock()
        for stream in self.all:
            if not stream.busy and stream.length and stream.idle_until <= now:
                self.clear(stream)

    def clear_idle(self) -> None:
        for stream in self.all:
            if not stream.busy and stream.length:
                self.clear(stream)


class PrefixStore:
    """Kept prefixes, saved in host RAM."""

    def __init__(self, ctx: Any, memory: Any, *, clock: Callable[[], float], host_budget_bytes: int) -> None:
        self._ctx = ctx
        self._memory = memory
        self._clock = clock
        self._budget = host_budget_bytes
        self._used = 0
        self.entries: list[Entry] = []
        self.saved = 0
        self.restored = 0
        self.copy_seconds = 0.0

    def best(self, namespace: str, tokens: Tokens) -> Entry | None:
        """The entry of `namespace` sharing the longest prefix with `tokens`."""
        best, longest = None, 0
        for entry in self.entries:
            if entry.namespace == namespace:
                length = common_prefix(entry.tokens, tokens)
                if length > longest:
                    best, longest = entry, length
        return best

    def covering(self, namespace: str, prefix: Tokens) -> Entry | None:
        """An entry whose cells include all of `prefix`."""
        for entry in self.entries:
            if entry.namespace == namespace and entry.length >= prefix.shape[0]:
                if common_prefix(entry.tokens, prefix) == prefix.shape[0]:
                    return entry
        return None

    def keep(self, namespace: str, prefix: Tokens, stream: Stream, ttl: float) -> None:
        """Keep `prefix` for `ttl` seconds (more if it already was): save `stream`'s cells, which
        hold it, unless an entry already holds them."""
        now = self._clock()
        existing = self.covering(namespace, prefix)
        if existing is not None:
            existing.expires_at = max(existing.expires_at, now + ttl)
            existing.last_used = now
            return
        started = time.perf_counter()
        size = llama_cpp.llama_state_seq_get_size(self._ctx, stream.seq)
        if not self._make_room(size):
            return
        saved = bytearray(size)
        view = _view(saved)
        written = llama_cpp.llama_state_seq_get_data(self._ctx, view, size, stream.seq)
        del view  # a bytearray with an exported view cannot shrink
        self.copy_seconds += time.perf_counter() - started
        if written == 0:
            return
        del saved[written:]
        entry = Entry(namespace, stream.tokens.copy(), saved, now + ttl, now)
        for covered in [e for e in self.entries if e.namespace == namespace and self._covers(entry, e)]:
            entry.expires_at = max(entry.expires_at, covered.expires_at)
            self._drop(covered)
        self.entries.append(entry)
        self._used += len(saved)
        self.saved += 1

    def restore(self, entry: Entry, stream: Stream) -> bool:
        """Copy `entry`'s cells into `stream` (replacing what it held); False if llama.cpp refused."""
        started = time.perf_counter()
        done = llama_cpp.llama_state_seq_set_data(self._ctx, _view(entry.saved), len(entry.saved), stream.seq)
        self.copy_seconds += time.perf_counter() - started
        stream.tokens = entry.tokens if done else _EMPTY
        if not done:
            llama_cpp.llama_memory_seq_rm(self._memory, stream.seq, -1, -1)
            return False
        entry.last_used = self._clock()
        self.restored += 1
        return True

    def expire(self) -> None:
        now = self._clock()
        for entry in [e for e in self.entries if e.expires_at <= now]:
            self._drop(entry)

    def host_bytes(self) -> int:
        return self._used

    def clear(self) -> None:
        for entry in list(self.entries):
            self._drop(entry)

    def _make_room(self, size: int) -> bool:
        if size > self._budget:
            return False
        for entry in sorted(self.entries, key=lambda e: e.expires_at):
            if self._used + size <= self._budget:
                break
            self._drop(entry)
        return self._used + size <= self._budget

    @staticmethod
    def _covers(entry: Entry, other: Entry) -> bool:
        return entry.length >= other.length and common_prefix(entry.tokens, other.tokens) == other.length

    def _drop(self, entry: Entry) -> None:
        self.entries.remove(entry)
        self._used -= len(entry.saved)


def _view(buffer: bytearray) -> ctypes.Array[ctypes.c_uint8]:
    return (ctypes.c_uint8 * len(buffer)).from_buffer(buffer)  # no copy


def _runs(seqs: Iterable[int]) -> int:
    """How many runs of consecutive ids `seqs` form."""
    ids = set(seqs)
    return sum(1 for seq in ids if seq - 1 not in ids)
