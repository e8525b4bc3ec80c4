"""What llama.cpp's flash attention is worth on this CPU, measured: the evidence behind Sijo's
default (`flash_attention = false`).

llama.cpp's CPU flash-attention kernel has a tiled path for batches of 64 query rows or more and
otherwise walks the KV cells one query row at a time. A decoding step (one token per stream) and
the short tail of a prompt after a cached prefix are such small batches, and their cost grows with
the context. This times, in process, on one context of each kind (same model, threads, batch
size, one KV stream per slot as in Sijo's engine):

- prefilling CONTEXT tokens from scratch in chunks of 256 (Sijo's `prefill_chunk`), then
- a batch of N tokens right after them (N = 1: a decoding step; 20: a question after a cached
  system prompt; 64: the smallest tiled batch), best of --runs, at each CONTEXT,
- and decoding 8 streams at once for 64 steps after short prompts (the `streams` case of
  parallel.py, without the server).

It prints milliseconds and the ratio flash-off / flash-on time (below 1: turning it off is
faster).

    .venv/bin/python bench/attention.py [--threads 2] [--contexts 0,1500,7000] [--runs 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from harness import default_model_path
from llama_cpp._logger import set_verbose

CHUNK = 256
BATCHES = (1, 20, 64)
STREAMS, STREAM_PROMPT, STREAM_STEPS = 8, 40, 64

Timings = tuple[float, dict[int, float]]  # prefill seconds, {N: seconds for N more tokens}
Results = dict[bool, tuple[dict[int, Timings], float]]  # flash on/off: per context, 8-stream tok/s


class Context:
    """One llama.cpp context like the engine's: 8 KV streams of `per_stream` cells."""

    def __init__(self, model: Any, flash: bool, threads: int, per_stream: int) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = STREAMS * per_stream
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = STREAMS
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise SystemExit("error: llama.cpp could not create the context")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(self, items: Sequence[tuple[int, int, int]]) -> float:
        """Seconds to decode (seq, pos, token) items as one batch."""
        batch = self.batch
        for i, (seq, pos, token) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, 1
        batch.n_tokens = len(items)
        started = time.perf_counter()
        if llama_cpp.llama_decode(self.ctx, batch) != 0:
            raise SystemExit("error: llama_decode failed")
        return time.perf_counter() - started

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)


def at_context(context: Context, tokens: list[int], length: int, runs: int) -> Timings:
    """(seconds to prefill `length` tokens, {N: best seconds for N more tokens})."""
    llama_cpp.llama_memory_clear(context.memory, True)
    prefill = sum(
        context.decode([(0, pos, tokens[pos]) for pos in range(start, min(start + CHUNK, length))])
        for start in range(0, length, CHUNK)
    )
    after: dict[int, float] = {}
    for n in BATCHES:
        times = []
        for _ in range(runs):
            llama_cpp.llama_memory_seq_rm(context.memory, 0, length, -1)
            times.append(context.decode([(0, length + i, tokens[length + i]) for i in range(n)]))
        after[n] = min(times)
    return prefill, after


def streams_rate(context: Context, rng: np.random.Generator) -> float:
    """Aggregate tok/s of 8 streams decoding together after short prompts."""
    llama_cpp.llama_memory_clear(context.memory, True)
    for seq in range(STREAMS):
        context.decode([(seq, pos, int(t)) for pos, t in enumerate(rng.integers(100, 40000, STREAM_PROMPT))])
    spent = 0.0
    for step in range(STREAM_STEPS):
        spent += context.decode(
            [(seq, STREAM_PROMPT + step, int(rng.integers(100, 40000))) for seq in range(STREAMS)]
        )
    return STREAMS * STREAM_STEPS / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contexts", default="0,1500,7000", help="comma list of context lengths")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    contexts = [int(c) for c in args.contexts.split(",")]
    set_verbose(False)
    llama_cpp.llama_backend_init()
    path = args.model or default_model_path()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    if not model:
        raise SystemExit(f"error: cannot load {path}")
    rng = np.random.default_rng(0)
    tokens = [int(t) for t in rng.integers(100, 40000, max(contexts) + max(BATCHES))]
    per_stream = max(contexts) + max(BATCHES) + 256
    results: Results = {}
    for flash in (True, False):
        context = Context(model, flash, args.threads, per_stream)
        rows = {length: at_context(context, tokens, length, args.runs) for length in contexts}
        results[flash] = rows, streams_rate(context, np.random.default_rng(1))
        context.close()
    report(results, contexts)
    llama_cpp.llama_model_free(model)


def report(
    results: dict[bool, tuple[dict[int, tuple[float, dict[int, float]]], float]], contexts: list[int]
) -> None:
    (on_rows, on_rate), (off_rows, off_rate) = results[True], results[False]
    print(f"{'what':<44}{'flash on':>12}{'flash off':>12}{'off/on':>9}")
    for length in contexts:
        if length:
            on, off = on_rows[length][0] * 1000, off_rows[length][0] * 1000
            print(f"{f'prefill {length} tokens (ms)':<44}{on:>12.0f}{off:>12.0f}{off / on:>9.2f}")
        for n in BATCHES:
            on, off = on_rows[length][1][n] * 1000, off_rows[length][1][n] * 1000
            label = f"{n} token{'s' if n > 1 else ''} after {length} (ms)"
            print(f"{label:<44}{on:>12.1f}{off:>12.1f}{off / on:>9.2f}")
    label = f"{STREAMS} streams decoding (tok/s, higher is better)"
    print(f"{label:<44}{on_rate:>12.1f}{off_rate:>12.1f}{off_rate / on_rate:>9.2f}")


if __name__ == "__main__":
    main()
