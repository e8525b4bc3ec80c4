"""What Sijo costs in front of an upstream engine: TTFT and decode tokens/s through Sijo
(`kind = "completions"`, `dialect = "llama-server"`) vs. straight to the same `llama-server`.

One `llama-server` (one slot, the embedded model) serves both paths, so they share its prompt cache
and never compete for the CPU: requests alternate, one at a time. Straight: a streaming
`POST /v1/chat/completions` (llama-server applies the GGUF's chat template, as Sijo does). Through
Sijo: a streaming `POST /v1/messages` with the same user message. Both greedy, same `max_tokens`.
Per request: TTFT (request sent → first text), decode tokens/s ((tokens - 1) / (last text - first
text)), and the total time of a 1-token request (the fixed cost per request).

Usage (from the repository root)::

    bash bench/build_llama_server.sh     # once
    .venv/bin/python bench/upstream.py [--runs 10] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import default_cache_dir, default_model_path, free_ports
from sijo_process import sijo_server

PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a hidden map inside an old "
    "book. Describe every scene in detail."
)


def llama_server(port: int, model: Path) -> subprocess.Popen[bytes]:
    cache = default_cache_dir()
    command = [
        str(cache / "llama-server"), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
        "-c", "8192", "--parallel", "1", "-t", str(os.cpu_count() or 2), "--jinja",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait(url: str, path: str) -> None:
    for _ in range(600):
        try:
            if (
                httpx.get(f"{url}{path}", headers={"anthropic-version": "2023-06-01"}, timeout=2).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Each SSE `data:` payload (Anthropic events and OpenAI chunks alike; `[DONE]` ends)."""
    for line in lines:
        if line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                return
            yield json.loads(data)


def direct(client: httpx.Client, url: str, max_tokens: int) -> dict[str, float]:
    body = {
        "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    return measure(client, f"{url}/v1/chat/completions", body, _chat_text, _chat_tokens)


def through_sijo(client: httpx.Client, url: str, max_tokens: int) -> dict[str, float]:
    body = {
        "model": "claude-sonnet-4-6", "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }  # fmt: skip
    return measure(client, f"{url}/v1/messages", body, _sijo_text, _sijo_tokens)


def measure(
    client: httpx.Client, url: str, body: dict[str, Any], text_of: Any, tokens_of: Any
) -> dict[str, float]:
    started = time.perf_counter()
    seen: list[dict[str, Any]] = []
    times: list[float] = []
    headers = {"anthropic-version": "2023-06-01"}
    with client.stream("POST", url, json=body, headers=headers, timeout=600) as response:
        response.raise_for_status()
        for data in events(response.iter_lines()):
            seen.append(data)
            if text_of(data):
                times.append(time.perf_counter())
    ended = time.perf_counter()
    tokens = max((tokens_of(e) for e in seen), default=0)
    result = {"total_s": ended - started, "tokens": float(tokens)}
    if times:
        result["ttft_ms"] = (times[0] - started) * 1000
        if tokens > 1 and times[-1] > times[0]:
            result["decode_tps"] = (tokens - 1) / (times[-1] - times[0])
    return result


def _chat_text(data: dict[str, Any]) -> bool:
    return any((c.get("delta") or {}).get("content") for c in data.get("choices") or ())


def _chat_tokens(data: dict[str, Any]) -> int:
    return int((data.get("usage") or {}).get("completion_tokens") or 0)


def _sijo_text(data: dict[str, Any]) -> bool:
    return data.get("type") == "content_block_delta" and bool(data["delta"].get("text"))


def _sijo_tokens(data: dict[str, Any]) -> int:
    return (
        int((data.get("usage") or {}).get("output_tokens") or 0) if data.get("type") == "message_delta" else 0
    )


def median(results: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    model = args.model or default_model_path()
    upstream_port, sijo_port = free_ports(2)
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    upstream = llama_server(upstream_port, model)
    config = f'[engines.default]\nkind = "completions"\nurl = "{upstream_url}"\ndialect = "llama-server"\n'
    try:
        wait(upstream_url, "/health")
        with sijo_server(sijo_port, config=config) as sijo_url, httpx.Client() as client:
            runs = {
                "direct": lambda n: direct(client, upstream_url, n),
                "sijo": lambda n: through_sijo(client, sijo_url, n),
            }
            rows: dict[str, dict[str, list[dict[str, float]]]] = {"direct": {}, "sijo": {}}
            for run in runs.values():  # warm-up: the prompt enters llama-server's cache
                run(args.max_tokens)
            for _ in range(args.runs):
                for name, run in runs.items():
                    rows[name].setdefault("long", []).append(run(args.max_tokens))
                    rows[name].setdefault("short", []).append(run(1))
        report(rows, args)
    finally:
        upstream.terminate()
        upstream.wait(timeout=30)
    return 0


def report(rows: dict[str, dict[str, list[dict[str, float]]]], args: argparse.Namespace) -> None:
    figures = {
        name: {
            "ttft_ms": median(kinds["long"], "ttft_ms"),
            "decode_tps": median(kinds["long"], "decode_tps"),
            "tokens": median(kinds["long"], "tokens"),
            "one_token_ms": median(kinds["short"], "total_s") * 1000,
        }
        for name, kinds in rows.items()
    }
    print(f"{args.runs} runs each, max_tokens {args.max_tokens}, alternating; medians")
    print(f"{'':8} {'TTFT ms':>9} {'decode tok/s':>13} {'tokens':>7} {'1-token request ms':>19}")
    for name, f in figures.items():
        print(
            f"{name:8} {f['ttft_ms']:9.1f} {f['decode_tps']:13.1f} {f['tokens']:7.0f}"
            f" {f['one_token_ms']:19.1f}"
        )
    d, s = figures["direct"], figures["sijo"]
    print(json.dumps({
        "ttft_added_ms": round(s["ttft_ms"] - d["ttft_ms"], 1),
        "decode_ratio_sijo_over_direct": round(s["decode_tps"] / d["decode_tps"], 3),
        "per_request_added_ms": round(s["one_token_ms"] - d["one_token_ms"], 1),
    }))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
