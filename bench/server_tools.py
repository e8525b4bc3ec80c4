"""What running a server tool adds to a reply, next to what decoding it costs.

One `sijo serve` on the embedded model, its search index filled with `--docs` generated documents
(`sijo search add`). Streaming requests force each tool (`tool_choice` naming it); for each, the
tool's run is timed as the client sees it: from the `content_block_stop` of the `server_tool_use`
block to the `content_block_start` of its result (the search, the fetch or the sandboxed execution,
plus Sijo's bookkeeping). A plain request of the same `max_tokens` gives the decode time to compare.
No peer runs these tools (Ollama's web search calls its cloud; none executes code), so the
ratios are against Sijo's own decoding.

    .venv/bin/python bench/server_tools.py [--runs 5] [--docs 500] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sijo_process import HEADERS, REPO_ROOT, sijo_server

WORDS = "kimchi volcano island river mountain temple palace harbour market festival garden bridge".split()


def make_corpus(folder: Path, count: int) -> None:
    for i in range(count):
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(400)]
        (folder / f"doc{i:04}.txt").write_text(f"Document {i}\n\n" + " ".join(words) + "\n")


def stream(url: str, body: dict[str, Any]) -> dict[str, float]:
    """One streamed request: total seconds, seconds from first to last delta, and each tool run."""
    started = time.perf_counter()
    marks: dict[str, float] = {}
    tool_runs: list[float] = []
    resumes: list[float] = []  # a result's start → the next block's start: re-render and prefill
    call_ended: float | None = None
    result_at: float | None = None
    blocks: dict[int, str] = {}
    with httpx.stream(
        "POST", f"{url}/v1/messages", json={**body, "stream": True}, headers=HEADERS, timeout=300
    ) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            now = time.perf_counter()
            kind = event["type"]
            if kind == "content_block_start":
                blocks[event["index"]] = event["content_block"]["type"]
                if result_at is not None:
                    resumes.append(now - result_at)
                    result_at = None
                if event["content_block"]["type"].endswith("_tool_result") and call_ended is not None:
                    tool_runs.append(now - call_ended)
                    call_ended, result_at = None, now
            elif kind == "content_block_stop" and blocks.get(event["index"]) == "server_tool_use":
                call_ended = now
            elif kind == "content_block_delta":
                marks.setdefault("first", now)
                marks["last"] = now
            elif kind == "message_delta":
                marks["output_tokens"] = event["usage"]["output_tokens"]
    total = time.perf_counter() - started
    return {
        "total": total,
        "tool": sum(tool_runs),
        "calls": len(tool_runs),
        "resume": statistics.mean(resumes) if resumes else float("nan"),
        "tokens": marks.get("output_tokens", 0),
    }


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="sijo-bench-tools-")
    corpus = Path(tempfile.mkdtemp(prefix="sijo-bench-corpus-"))
    make_corpus(corpus, args.docs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIJO_")} | {"SIJO_DATA_DIR": data}
    sijo = str(REPO_ROOT / ".venv" / "bin" / "sijo")
    subprocess.run([sijo, "search", "add", str(corpus)], env=env, check=True, stdout=subprocess.DEVNULL)
    question = [{"role": "user", "content": "Which document talks about the volcano on the island?"}]
    plain = {
        "model": "claude-haiku-4-5",
        "max_tokens": args.max_tokens,
        "messages": question,
        "temperature": 0,
    }
    # Room for the model's call (it writes its own query or command) and an answer after the result.
    with_tools = {**plain, "max_tokens": args.max_tokens + 160}
    search = {
        **with_tools,
        "messages": [{"role": "user", "content": "Search the web for kimchi."}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "tool", "name": "web_search"},
    }
    code = {
        **with_tools,
        "messages": [{"role": "user", "content": "Run a shell command that prints hello."}],
        "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
        "tool_choice": {"type": "tool", "name": "code_execution"},
    }
    with sijo_server(args.port, data=data) as url:
        for body in (plain, search, code):  # warm-up: the model loaded, the sandbox checked
            stream(url, body)
        results = {
            name: [stream(url, body) for _ in range(args.runs)]
            for name, body in (("plain", plain), ("web_search", search), ("code_execution", code))
        }
    decode = median(results["plain"], "total")
    per_token = decode / max(1.0, median(results["plain"], "tokens"))
    print(f"corpus: {args.docs} documents; {args.runs} runs each; medians; max_tokens {args.max_tokens}")
    tokens = median(results["plain"], "tokens")
    plain_ms, token_ms = decode * 1000, per_token * 1000
    print(f"plain request (no tools): {plain_ms:.0f} ms for {tokens:.0f} tokens ({token_ms:.1f} ms/token)")
    for name in ("web_search", "code_execution"):
        runs = [run for run in results[name] if run["calls"]]
        if not runs:
            print(f"{name}: the model made no call")
            continue
        tool = statistics.median(run["tool"] / run["calls"] for run in runs)
        print(
            f"{name}: {tool * 1000:.1f} ms per call = {tool / decode:.2f}x a plain request's time, "
            f"{tool / per_token:.1f} tokens' worth of decoding; then {median(runs, 'resume') * 1000:.0f} ms "
            f"to the next block (the prompt rendered again with the result, and its new tokens prefilled); "
            f"whole request {median(runs, 'total') * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
