"""PrefixStore: token prefixes whose KV cells the engine keeps, so later requests skip their prefill.

An entry is a llama.cpp sequence id holding the cells of positions [0, n) of a token prefix, within
a namespace (one per workspace: a request only ever reuses its own namespace's entries). Entries
share cells with the slot they were taken from and with each other (`llama_memory_seq_cp`), so
keeping a prefix costs no copy. Two kinds:

- *kept* entries: prefixes a request asked to keep (its cache breakpoints) until a deadline, which
  every later use pushes back;
- *leftovers*: what a finished request left in its slot, kept while there is room, for speed only.

Entries past their deadline are dropped; when cells run short, leftovers go first, then the kept
entries that expire soonest. A kept entry evicted for room is first saved to host RAM (within its
own budget) and restored into the KV cache the next time it matches.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from sijo.engines.llama_cpp.cells import CellLedger

Tokens = npt.NDArray[np.int32]


@dataclass(eq=False, slots=True)
class Entry:
    namespace: str
    tokens: Tokens
    seq: int | None  # None: saved in host RAM (`saved`), not in the KV cache
    expires_at: float
    last_used: float
    kept: bool
    saved: bytearray | ctypes.Array[ctypes.c_uint8] | None = field(default=None, repr=False)

    @property
    def length(self) -> int:
        return int(self.tokens.shape[0])


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    length: int  # tokens of the request covered by the entry


def common_prefix(a: Tokens, b: Tokens) -> int:
    n = min(a.shape[0], b.shape[0])
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else int(n)


class SeqPool:
    """llama.cpp sequence ids, handed out to slots and entries."""

    def __init__(self, count: int) -> None:
        self._free = list(range(count - 1, -1, -1))

    def take(self) -> int | None:
        return self._free.pop() if self._free else None

    def give(self, seq: int) -> None:
        self._free.append(seq)

    def available(self) -> int:
        return len(self._free)


class PrefixStore:
    def __init__(
        self,
        ctx: Any,
        memory: Any,
        ledger: CellLedger,
        pool: SeqPool,
        *,
        clock: Callable[[], float],
        host_budget_bytes: int,
    ) -> None:
        self._ctx = ctx
        self._memory = memory
        self._ledger = ledger
        self._pool = pool
        self._clock = clock
        self._host_budget = host_budget_bytes
        self._host_used = 0
        self.entries: list[Entry] = []
        self.restored = 0
        self.spilled = 0

    # --- lookup ------------------------------------------------------------------------------

    def best(self, namespace: str, tokens: Tokens) -> Match | None:
        """The entry sharing the longest prefix with `tokens` (in the KV cache or in host RAM)."""
        best: Match | None = None
        for entry in self.entries:
            if entry.namespace != namespace:
                continue
            length = common_prefix(entry.tokens, tokens)
            if length and (
                best is None
                or length > best.length
                or (length == best.length and entry.seq is not None and best.entry.seq is None)
            ):
                best = Match(entry, length)
        return best

    def find(self, namespace: str, tokens: Tokens) -> Entry | None:
        for entry in self.entries:
            if entry.namespace == namespace and entry.length == tokens.shape[0]:
                if common_prefix(entry.tokens, tokens) == entry.length:
                    return entry
        return None

    def touch(self, entry: Entry, ttl: float | None) -> None:
        now = self._clock()
        entry.last_used = now
        if ttl is not None:
            entry.expires_at = max(entry.expires_at, now + ttl)
            entry.kept = True

    def restore(self, entry: Entry) -> bool:
        """Bring a host-RAM entry back into the KV cache; False when no sequence id is free."""
        if entry.seq is not None:
            return True
        assert entry.saved is not None
        seq = self._pool.take()
        if seq is None:
            return False
        data = (ctypes.c_uint8 * len(entry.saved)).from_buffer(entry.saved)  # no copy
        if llama_cpp.llama_state_seq_set_data(self._ctx, data, len(entry.saved), seq) == 0:
            llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
            self._pool.give(seq)
            return False
        self._ledger.extend(seq, entry.length)
        self._host_used -= len(entry.saved)
        entry.seq, entry.saved = seq, None
        self.restored += 1
        return True

    # --- adding --------------------------------------------------------------------------------

    def keep(self, namespace: str, tokens: Tokens, source_seq: int, ttl: float | None) -> None:
        """Keep positions [0, len(tokens)) of `source_seq` as an entry (or refresh the existing one)."""
        existing = self.find(namespace, tokens)
        if existing is not None:
            self.touch(existing, ttl)
            return
        seq = self._pool.take()
        if seq is None and self._evict_one(spill=False):
            seq = self._pool.take()
        if seq is None:
            return
        llama_cpp.llama_memory_seq_cp(self._memory, source_seq, seq, 0, int(tokens.shape[0]))
        self._ledger.copy(source_seq, seq, int(tokens.shape[0]))
        now = self._clock()
        self.entries.append(
            Entry(namespace, tokens.copy(), seq, now + (ttl or 0.0), now, kept=ttl is not None)
        )

    def adopt(self, namespace: str, tokens: Tokens, seq: int, idle_ttl: float, limit: int) -> None:
        """Take a finished slot's sequence as a leftover entry (no copy: the id changes hands).

        At most `limit` leftovers stay, the most recently used: every cell held widens the range
        each decode step's attention spans in the unified KV cache.
        """
        if tokens.shape[0] == 0 or idle_ttl <= 0 or self.find(namespace, tokens) is not None:
            self.free_seq(seq)
            return
        leftovers = sorted((e for e in self.entries if not e.kept), key=lambda e: e.last_used)
        for old in leftovers[: max(0, len(leftovers) - limit + 1)]:
            self._drop(old)
        now = self._clock()
        self.entries.append(Entry(namespace, tokens.copy(), seq, now + idle_ttl, now, kept=False))

    # --- dropping ------------------------------------------------------------------------------

    def expire(self) -> None:
        now = self._clock()
        for entry in [e for e in self.entries if e.expires_at <= now]:
            self._drop(entry)

    def shrink_to(self, limit: int, in_use: set[int] | None = None) -> None:
        """Spill or drop entries (except those whose seq ids are `in_use`) until at most `limit`
        cells are used, or nothing is left to evict."""
        while self._ledger.used() > limit and self._evict_one(spill=True, keep_seqs=in_use):
            pass

    def need_seq(self) -> bool:
        """Free a sequence id for a slot by evicting an entry; False if none is left to evict."""
        return self._pool.available() > 0 or self._evict_one(spill=True)

    def host_bytes(self) -> int:
        return self._host_used

    def clear(self) -> None:
        for entry in list(self.entries):
            self._drop(entry)

    def _evict_one(self, *, spill: bool, keep_seqs: set[int] | None = None) -> bool:
        """Evict the least recently used leftover, else the least recently used kept entry."""
        resident = [e for e in self.entries if e.seq is not None and e.seq not in (keep_seqs or ())]
        if not resident:
            return False
        victim = min(resident, key=lambda e: (e.kept, e.last_used))
        if spill and victim.kept and self._spill(victim):
            return True
        self._drop(victim)
        return True

    def _spill(self, entry: Entry) -> bool:
        assert entry.seq is not None
        size = llama_cpp.llama_state_seq_get_size(self._ctx, entry.seq)
        if self._host_used + size > self._host_budget:
            return False
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx, buffer, size, entry.seq)
        if written == 0:
            return False
        entry.saved = buffer if written == size else bytearray(memoryview(buffer)[:written])
        self._host_used += len(entry.saved)
        self.free_seq(entry.seq)
        entry.seq = None
        self.spilled += 1
        return True

    def _drop(self, entry: Entry) -> None:
        self.entries.remove(entry)
        if entry.seq is not None:
            self.free_seq(entry.seq)
        if entry.saved is not None:
            self._host_used -= len(entry.saved)

    def free_seq(self, seq: int) -> None:
        """Free a sequence's cells (those no other sequence shares) and give its id back."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
        self._ledger.drop(seq)
        self._pool.give(seq)
