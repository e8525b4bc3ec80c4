"""The cost of constrained decoding: mask time per token, against the engine's whole step time.

Runs forced tool calls and structured outputs through a real `sijo serve` (started here, or --url)
with the official SDK, then reads the engine's counters from /sijo/status: `mask_seconds` over
`masked_tokens` is the per-token cost of computing and applying the grammar's mask (llguidance),
`step_seconds` over `steps` the engine's time per decode step.

    .venv/bin/python bench/constrained.py --requests 40
"""

from __future__ import annotations

import argparse
import time

import anthropic
import httpx
from sijo_process import HEADERS, sijo_server

TOOL = {
    "name": "record",
    "description": "Record a person.",
    "input_schema": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "city": {"type": "string", "enum": ["Seoul", "Busan", "Incheon"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "age", "city", "tags"],
    },
}
PROMPT = [{"role": "user", "content": "Record an example person."}]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with sijo_server(args.port) as url:
        client = anthropic.Anthropic(base_url=url, api_key="bench", max_retries=0)
        before = _engine(url)
        started = time.perf_counter()
        for i in range(args.requests):
            if i % 2:
                client.messages.create(
                    model="claude-sonnet-4-6",
                    max_tokens=200,
                    tools=[TOOL],  # type: ignore[list-item]
                    tool_choice={"type": "tool", "name": "record"},
                    messages=PROMPT,  # type: ignore[arg-type]
                )
            else:
                client.messages.create(
                    model="claude-sonnet-4-6",
                    max_tokens=200,
                    messages=PROMPT,  # type: ignore[arg-type]
                    output_config={"format": {"type": "json_schema", "schema": TOOL["input_schema"]}},
                )
        elapsed = time.perf_counter() - started
        after = _engine(url)
    delta = {
        key: after[key] - before[key] for key in ("masked_tokens", "mask_seconds", "steps", "step_seconds")
    }
    per_token = 1000 * delta["mask_seconds"] / max(1, delta["masked_tokens"])
    per_step = 1000 * delta["step_seconds"] / max(1, delta["steps"])
    print(
        f"{args.requests} constrained requests in {elapsed:.1f} s, {delta['masked_tokens']:.0f} masked tokens"
    )
    print(f"mask: {per_token:.3f} ms/token; engine step: {per_step:.2f} ms; ratio {per_token / per_step:.1%}")


def _engine(url: str) -> dict[str, float]:
    status = httpx.get(f"{url}/sijo/status", headers=HEADERS).json()
    return dict(status["engines"]["default"])


if __name__ == "__main__":
    main()
