"""Message Batches on a real `sijo serve`: does interactive traffic stay fast while a batch runs,
and how fast does the batch itself go?

1. TTFT of streaming interactive requests on an idle server (median of --probes).
2. A batch of --requests requests is submitted; while it runs, the same interactive TTFT probes.
3. The batch's throughput (output tokens/s, from its results' usage), against the same requests
   sent as interactive ones, --slots at a time (what a client without batches would do).

Prints the ratios: TTFT during the batch / TTFT idle (near 1 means batches only fill idle
capacity), and batch throughput / interactive throughput.

    .venv/bin/python bench/batches.py --requests 48
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import time
from typing import Any

import anthropic
from sijo_process import sijo_server

MODEL = "claude-haiku-4-5"


def params(i: int, max_tokens: int) -> dict[str, Any]:
    question = f"Request {i}: write a short paragraph about the sea."
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": question}]}


def ttft(client: anthropic.Anthropic) -> float:
    started = time.perf_counter()
    with client.messages.stream(**params(-1, 16)) as stream:  # type: ignore[arg-type]
        for event in stream:
            if event.type == "content_block_delta":
                return time.perf_counter() - started
    return time.perf_counter() - started


def probes(client: anthropic.Anthropic, count: int, gap: float) -> float:
    values = []
    for _ in range(count):
        values.append(ttft(client))
        time.sleep(gap)
    return statistics.median(values)


def run_batch(
    client: anthropic.Anthropic, count: int, max_tokens: int, probe_count: int
) -> tuple[float, int, float]:
    requests = [{"custom_id": f"r{i}", "params": params(i, max_tokens)} for i in range(count)]
    started = time.perf_counter()
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    time.sleep(1.0)
    busy_ttft = probes(client, probe_count, 0.5)
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    tokens = sum(
        line.result.message.usage.output_tokens
        for line in client.messages.batches.results(batch.id)
        if line.result.type == "succeeded"
    )
    return elapsed, tokens, busy_ttft


def run_interactive(
    client: anthropic.Anthropic, count: int, max_tokens: int, slots: int
) -> tuple[float, int]:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(slots) as pool:
        replies = list(pool.map(lambda i: client.messages.create(**params(i, max_tokens)), range(count)))  # type: ignore[arg-type]
    return time.perf_counter() - started, sum(reply.usage.output_tokens for reply in replies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    with sijo_server(args.port) as url:
        client = anthropic.Anthropic(base_url=url, api_key="bench", max_retries=0, timeout=600)
        ttft(client)  # warm-up
        idle = probes(client, args.probes, 0.2)
        batch_s, batch_tokens, busy = run_batch(client, args.requests, args.max_tokens, args.probes)
        inter_s, inter_tokens = run_interactive(client, args.requests, args.max_tokens, args.slots)
    batch_rate, inter_rate = batch_tokens / batch_s, inter_tokens / inter_s
    print(
        f"interactive TTFT: idle {idle * 1000:.0f} ms, during the batch {busy * 1000:.0f} ms "
        f"(ratio {busy / idle:.2f})"
    )
    print(f"batch of {args.requests}: {batch_s:.1f} s, {batch_tokens} output tokens, {batch_rate:.0f} tok/s")
    print(
        f"same requests interactive, {args.slots} at a time: {inter_s:.1f} s, {inter_tokens} tokens, "
        f"{inter_rate:.0f} tok/s"
    )
    print(f"batch throughput / interactive throughput: {batch_rate / inter_rate:.2f}")


if __name__ == "__main__":
    main()
