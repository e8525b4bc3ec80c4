"""Single-stream latency/throughput benchmark: Sijo vs. llama.cpp's ``llama-server``.

Both servers are started (``harness.serving``) on free loopback ports, on the same GGUF model and
with the same thread count. Identical streaming ``POST /v1/messages`` requests (Anthropic Messages
API, ``temperature: 0``) are then sent to each server, one request at a time and alternating
between the servers so that they never compete for the CPU. For every request we measure TTFT
(request sent -> first ``content_block_delta``) and decode tokens/s
(``(output_tokens - 1) / (last text delta - first text delta)``, ``output_tokens`` from the final
``message_delta`` usage).

After one warm-up request per server, ``--runs`` measured requests are made per server and the
medians are reported, together with the ratios ``Sijo decode / llama-server decode`` (target:
>= 1.0) and ``llama-server TTFT / Sijo TTFT``, and Sijo's Python overhead per engine step.

Usage (from the repository root)::

    bash bench/build_llama_server.sh          # once; builds the peer server
    .venv/bin/python bench/single_stream.py [--model PATH] [--threads N]
                                            [--runs K] [--max-tokens M]

Both servers are always killed on exit, including on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
from harness import (
    PEER,
    SIJO,
    SINGLE_TARGET,
    STORY_PROMPT,
    StreamResult,
    add_measure_args,
    add_server_args,
    against,
    default_model_path,
    fmt,
    is_busy,
    median_decode_tps,
    median_or_none,
    median_ttft_s,
    message_payload,
    print_kernels,
    raise_on_sigterm,
    ratio,
    selected_names,
    serving,
    short_output_warning,
    sijo_counters,
    single_stream_runs,
    to_ms,
)

DEFAULT_PROMPT = STORY_PROMPT


def payload_for(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """Identical payload for both servers; optionally unique per run to defeat prompt caches."""
    prompt = args.prompt
    if args.vary_prompt:
        prompt = f"(Request #{run + 2} at {time.time_ns()}.) {prompt}"
    return message_payload(prompt, args.max_tokens)


def print_report(results: dict[str, list[StreamResult]], args: argparse.Namespace, out: TextIO) -> None:
    print(file=out)
    print(
        f"model={args.model.name} threads={args.threads} runs={args.runs} "
        f"max_tokens={args.max_tokens} (medians)",
        file=out,
    )
    header = f"{'server':<14}{'TTFT (ms)':>12}{'decode tok/s':>15}{'out tokens':>12}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for name, runs in results.items():
        tokens = median_or_none([float(r.output_tokens) for r in runs])
        print(
            f"{name:<14}{fmt(to_ms(median_ttft_s(runs)), '12.1f')}"
            f"{fmt(median_decode_tps(runs), '15.1f')}{fmt(tokens, '12.0f')}",
            file=out,
        )
    if SIJO in results and PEER in results:
        sijo, peer = results[SIJO], results[PEER]
        decode_ratio = ratio(median_decode_tps(sijo), median_decode_tps(peer))
        ttft_ratio = ratio(median_ttft_s(peer), median_ttft_s(sijo))
        print(file=out)
        print(
            f"decode ratio  Sijo / llama-server: {fmt(decode_ratio, '.3f')}  "
            f"{against(decode_ratio, SINGLE_TARGET)}",
            file=out,
        )
        print(f"TTFT ratio    llama-server / Sijo: {fmt(ttft_ratio, '.3f')}", file=out)
    busy_runs = [r for runs in results.values() for r in runs if is_busy(r.other_cpu)]
    if busy_runs:
        print(
            f"warning: other processes used the CPU during {len(busy_runs)} run(s), even after "
            "retries; results are unreliable, rerun on a quiet machine",
            file=out,
        )
    texts = {r.text for runs in results.values() for r in runs}
    if len(results) > 1 and not args.vary_prompt:
        same = "yes" if len(texts) == 1 else f"no ({len(texts)} distinct outputs)"
        print(f"identical output text across servers and runs: {same}", file=out)
    for name, runs in results.items():
        warning = short_output_warning(name, runs)
        if warning:
            print(warning, file=out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Single-stream benchmark: Sijo vs. llama-server on /v1/messages."
    )
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per server")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--ctx", type=int, default=8192, help="llama-server context size")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument(
        "--vary-prompt", action="store_true",
        help="prefix each request with a unique tag so prompt caches cannot be reused",
    )  # fmt: skip
    add_server_args(parser)
    add_measure_args(
        parser, request_timeout=300.0, retries=3,
        retries_help="times to repeat a run during which other processes used the CPU",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = default_model_path()
    if args.runs < 1 or args.max_tokens < 2 or args.threads < 1 or args.retries < 0:
        parser.error("--runs, --threads must be >= 1, --max-tokens >= 2, --retries >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        raise SystemExit(f"error: model not found: {args.model}")
    names = selected_names(args)
    raise_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix="sijo-bench-"))
    kernels = print_kernels(args, names, [args.model], log_dir)
    succeeded = False
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    try:
        with contextlib.ExitStack() as stack, httpx.Client(timeout=timeout) as client:
            # started one after the other, so that the model loads do not compete
            servers = [stack.enter_context(serving(name, args, log_dir, kernels)) for name in names]
            results = single_stream_runs(client, servers, lambda run: payload_for(args, run), args.runs, args)
            for server in servers:
                if server.name == SIJO:
                    print(f"{SIJO} /sijo/status: {sijo_counters(client, server.base_url).describe()}")
        print_report(results, args, sys.stdout)
        succeeded = True
    finally:
        if args.keep_logs or not succeeded:
            print(f"server logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # servers were already stopped by serving()'s finally
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:  # servers already stopped
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
