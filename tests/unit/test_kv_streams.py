"""Where a request runs (`Streams.place`): the stream that leaves the least to prefill, never another
namespace's cells, a copy from host RAM only when it reuses more, running sequence ids kept in one run."""

from __future__ import annotations

import numpy as np

from sijo.engines.llama_cpp.kvstore import Entry, Streams, Tokens


def tokens(*values: int) -> Tokens:
    return np.asarray(values, dtype=np.int32)


def streams(count: int) -> Streams:
    return Streams(ctx=None, memory=None, count=count, clock=lambda: 0.0)


def hold(
    pool: Streams, seq: int, namespace: str, held: Tokens, *, busy: bool = False, used: float = 0.0
) -> None:
    stream = pool.all[seq]
    stream.namespace, stream.tokens, stream.busy, stream.last_used = namespace, held, busy, used


def whole(n: int) -> int:
    return n


PROMPT = tokens(*range(1, 2001))


def test_a_request_continues_in_the_stream_holding_its_prefix() -> None:
    pool = streams(4)
    hold(pool, 2, "a", PROMPT[:1500])
    placed = pool.place("a", PROMPT, None, whole)
    assert (placed.stream.seq, placed.reuse, placed.entry) == (2, 1500, None)


def test_another_namespace_s_cells_are_never_reused() -> None:
    pool = streams(4)
    hold(pool, 2, "b", PROMPT[:1500])
    placed = pool.place("a", PROMPT, None, whole)
    assert placed.reuse == 0 and placed.stream.seq != 2  # nor overwritten while an empty stream is free


def test_a_longer_kept_prefix_is_copied_from_host_ram() -> None:
    pool = streams(4)
    hold(pool, 1, "a", PROMPT[:100])
    entry = Entry("a", PROMPT[:1800].copy(), bytearray(1), expires_at=1.0, last_used=0.0)
    placed = pool.place("a", PROMPT, entry, whole)
    assert placed.entry is entry and placed.reuse == 1800
    # equal reuse: in place, no copy
    hold(pool, 1, "a", PROMPT[:1800])
    placed = pool.place("a", PROMPT, entry, whole)
    assert placed.entry is None and placed.stream.seq == 1 and placed.reuse == 1800


def test_the_last_prompt_token_and_images_are_never_reused() -> None:
    pool = streams(2)
    hold(pool, 0, "a", PROMPT.copy())
    assert pool.place("a", PROMPT, None, lambda n: min(n, 1999)).reuse == 1999
    assert pool.place("a", PROMPT, None, lambda n: min(n, 1200)).reuse == 1200


def test_running_sequences_stay_one_run_of_ids() -> None:
    pool = streams(4)
    hold(pool, 0, "x", PROMPT[:10], busy=True)
    hold(pool, 1, "x", PROMPT[:10], busy=True)
    # a cold request: seq 2 extends the run; seq 3 would start a second micro-batch
    assert pool.place("a", PROMPT, None, whole).stream.seq == 2
    # a small in-place gain does not split the run ...
    hold(pool, 3, "a", PROMPT[:50])
    assert pool.place("a", PROMPT, None, whole).stream.seq == 2
    # ... a large one does
    hold(pool, 3, "a", PROMPT[:1500])
    assert pool.place("a", PROMPT, None, whole).stream.seq == 3


def test_an_idle_stream_s_cells_are_overwritten_last_and_least_recently_used_first() -> None:
    pool = streams(3)
    hold(pool, 0, "b", tokens(7, 8, 9), used=5.0)
    hold(pool, 1, "b", tokens(7, 8), used=1.0)
    assert pool.place("a", PROMPT, None, whole).stream.seq == 2  # the empty one
    hold(pool, 2, "b", tokens(7), used=3.0)
    assert pool.place("a", PROMPT, None, whole).stream.seq == 1  # the least recently used
