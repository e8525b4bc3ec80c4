"""CellLedger: how many KV cells are in use, when sequences share cells through `llama_memory_seq_cp`.

llama.cpp does not report used cells, so the engine keeps its own account. Every cell belongs to a
*run*: the positions one sequence decoded one after another. A sequence is a list of references to
runs, in position order. Copying the first `n` positions of a sequence to another (the only copy the
engine does) gives the copy references to prefixes of the same runs, and removing a sequence drops
its references. So every reference to a run covers a prefix of it, and the cells a run holds are
those of its longest reference.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(slots=True)
class _Ref:
    run: int
    start: int  # first position of the run
    end: int  # one past the last position this sequence uses


class CellLedger:
    def __init__(self) -> None:
        self._sequences: dict[int, list[_Ref]] = {}
        self._owner: dict[int, int] = {}  # run → the sequence that may extend it
        self._runs = itertools.count()
        self._used: int | None = 0  # None: recount on the next `used()`

    def length(self, seq: int) -> int:
        refs = self._sequences.get(seq)
        return refs[-1].end if refs else 0

    def extend(self, seq: int, count: int) -> None:
        """`seq` decoded `count` more positions after its current end."""
        refs = self._sequences.setdefault(seq, [])
        end = refs[-1].end if refs else 0
        last = refs[-1] if refs else None
        if self._used is not None:
            self._used += count
        if last is not None and self._owner.get(last.run) == seq:  # the owner's reference is the longest
            last.end += count
            return
        run = next(self._runs)
        self._owner[run] = seq
        refs.append(_Ref(run, end, end + count))

    def copy(self, src: int, dst: int, count: int) -> None:
        """`dst` (empty) now shares the cells of positions [0, count) of `src`."""
        refs: list[_Ref] = []
        for ref in self._sequences.get(src, []):
            if ref.start >= count:
                break
            refs.append(_Ref(ref.run, ref.start, min(ref.end, count)))
        self._sequences[dst] = refs

    def drop(self, seq: int) -> None:
        self._used = None
        for ref in self._sequences.pop(seq, []):
            if self._owner.get(ref.run) == seq:
                del self._owner[ref.run]

    def used(self) -> int:
        if self._used is None:
            self._used = sum(end - start for start, end in self._run_spans().values())
        return self._used

    def sequences(self) -> set[int]:
        return {seq for seq, refs in self._sequences.items() if refs}

    def _run_spans(self) -> dict[int, tuple[int, int]]:
        spans: dict[int, tuple[int, int]] = {}
        for refs in self._sequences.values():
            for ref in refs:
                start, end = spans.get(ref.run, (ref.start, ref.start))
                spans[ref.run] = (start, max(end, ref.end))
        return spans
