"""What llama.cpp's extra buffer types (weight repacking) are worth, measured on this machine.

Sijo's engine must never take llama.cpp's AMX path (it crashes on AMX CPUs, llama.cpp #20824). Two
ways avoid it: compile llama.cpp without AMX kernels (what `scripts/install-llama-cpp.sh` does;
repacking stays), or load weights with `use_extra_bufts = False` (what the engine falls back to on
a build that has AMX kernels; repacking goes too). This measures prefill and decode with and
without the extra buffer types, on the shipped Q4_1 model and on a Q4_0 made from it with
llama.cpp's quantize API (Q4_0 is a type llama.cpp repacks on x86), in one run, and prints ratios.

    .venv/bin/python bench/cpu_paths.py [--threads N] [--prompt 512] [--decode 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import llama_cpp
import numpy as np
from harness import default_model_path, q4_0_model
from llama_cpp import _internals
from llama_cpp._logger import set_verbose


def measure(path: Path, extra: bool, threads: int, n_prompt: int, n_decode: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) for one load of `path`."""
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = extra
    model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = n_prompt + n_decode + 16
    cparams.n_batch = cparams.n_ubatch = n_prompt
    cparams.n_threads = cparams.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model.model, cparams)
    n_vocab = llama_cpp.llama_vocab_n_tokens(model.vocab)
    batch = llama_cpp.llama_batch_init(n_prompt, 0, 1)
    try:
        text = b"The quick brown fox jumps over the lazy dog. " * 64
        prompt = model.tokenize(text, False, False)[:n_prompt]
        _fill(batch, prompt, 0)
        started = time.perf_counter()
        if llama_cpp.llama_decode(ctx, batch) != 0:
            sys.exit("llama_decode failed")
        prefill = len(prompt) / (time.perf_counter() - started)
        position = len(prompt)
        started = time.perf_counter()
        for _ in range(n_decode):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            _fill(batch, [int(logits.argmax())], position)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                sys.exit("llama_decode failed")
            position += 1
        decode = n_decode / (time.perf_counter() - started)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        model.close()
    return prefill, decode


def _fill(batch: llama_cpp.llama_batch, tokens: list[int], start: int) -> None:
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = start + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = i == len(tokens) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens prefilled in one batch")
    parser.add_argument("--decode", type=int, default=128, help="tokens decoded one at a time")
    parser.add_argument("--runs", type=int, default=3, help="runs per case; medians are reported")
    args = parser.parse_args()
    set_verbose(False)
    llama_cpp.llama_backend_init()
    info = llama_cpp.llama_print_system_info().decode()
    if "AMX_INT8 = 1" in info:
        sys.exit("this llama-cpp-python has AMX kernels: extra buffer types would crash an AMX CPU. "
                 "Reinstall it with scripts/install-llama-cpp.sh.")
    print(f"llama.cpp: {info.strip()}")
    shipped = default_model_path()
    for path in (shipped, q4_0_model(shipped)):
        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for run in range(args.runs):  # alternate the two cases, and their order, so drift hits both alike
            for extra in (True, False) if run % 2 == 0 else (False, True):
                results[extra].append(measure(path, extra, args.threads, args.prompt, args.decode))
        medians = {
            extra: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            for extra, runs in results.items()
        }
        on, off = medians[True], medians[False]
        print(f"\n{path.name} ({args.threads} threads, median of {args.runs})")
        for label, (prefill, decode) in (("on  (repack)  ", on), ("off (fallback)", off)):
            print(f"  extra buffer types {label}: prefill {prefill:7.1f} tok/s   decode {decode:6.1f} tok/s")
        ratios = f"prefill {on[0] / off[0]:7.2f}x        decode {on[1] / off[1]:6.2f}x"
        print(f"  ratio on / off:                   {ratios}")


if __name__ == "__main__":
    main()
