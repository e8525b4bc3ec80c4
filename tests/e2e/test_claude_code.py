"""Claude Code (npm `@anthropic-ai/claude-code`, pinned in ts/package.json) against a real server.

`claude -p --bare` runs whole agent sessions on the embedded 135M model, with Claude Code's own
requests (adaptive thinking, `context_management`, betas, `?beta=true`): one ends in its
StructuredOutput tool, one reads a file with its Read tool and sends the result back. The model is
too small to decide to call a tool, so the server's model config sets `force_tool_use` (README,
"Claude Code with Sijo"); thinking budgets are cut to a few tokens and Claude Code's max_tokens to
64 to keep the suite fast. Without --bare, Claude Code's ~30k-token first request cannot fit the 8k
model and gets the API's `prompt is too long` 400, which Claude Code turns into its own message.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, start_configured, stop_server

CLAUDE = Path(__file__).parent / "ts" / "node_modules" / ".bin" / "claude"
CONFIG = """
[[models]]
id = "claude-sonnet-4-6"
force_tool_use = true
thinking_budgets = { low = 16, medium = 16, high = 16, xhigh = 16, max = 16 }
"""


@pytest.fixture(scope="module")
def sijo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_configured(tmp_path_factory.mktemp("claude-code"), CONFIG)
    yield running
    stop_server(running)


def claude(server: Server, tmp: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """`claude -p` in `tmp` (its working directory and HOME), as Claude Code's docs tell a user to
    point it at another endpoint; returns its exit status and the JSON it printed, line by line."""
    assert CLAUDE.exists(), "run `make test` to install Claude Code"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env |= {
        "HOME": str(tmp),
        "ANTHROPIC_BASE_URL": server.base_url,
        "ANTHROPIC_API_KEY": server.api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "64",
    }
    command = [str(CLAUDE), "-p", *args, "--model", "claude-sonnet-4-6", "--no-session-persistence"]
    done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON from claude (exit {done.returncode}): {done.stdout}\n{done.stderr}"
    return done.returncode, lines


def blocks(lines: list[dict[str, Any]], role: str, kind: str) -> list[dict[str, Any]]:
    messages = [line["message"] for line in lines if line.get("type") == role]
    return [b for m in messages if isinstance(m["content"], list) for b in m["content"] if b["type"] == kind]


def test_a_bare_session_with_structured_output_completes(sijo: Server, tmp_path: Path) -> None:
    """One forced call of Claude Code's StructuredOutput tool (its only tool here), which Claude Code
    runs (it validates the input and ends the session): every step is guaranteed, none is the
    model's judgement."""
    schema = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
    status, lines = claude(
        sijo,
        tmp_path,
        "What is the secret word?",
        "--bare",
        "--tools",
        "",  # no built-in tools: nothing the model picks can touch the machine
        "--json-schema",
        json.dumps(schema),
        "--max-turns",
        "3",
        "--output-format",
        "json",
    )
    result = lines[-1]
    assert status == 0 and result["type"] == "result", result
    assert result["subtype"] == "success" and result["is_error"] is False, result
    assert isinstance(result["structured_output"]["word"], str), result
    assert result["usage"]["input_tokens"] > 0, result


def test_a_bare_session_runs_a_tool_and_sends_its_result_back(sijo: Server, tmp_path: Path) -> None:
    """Claude Code reads a file for the model and sends the result back. When the session ends is
    the model's judgement: a reply that runs past max_tokens makes Claude Code ask it to go on (a new
    user turn, so another forced call), and after three such replies it gives up; that ending is
    accepted, an API error never is."""
    note = tmp_path / "note.txt"
    note.write_text("The secret word is pineapple.\n")
    status, lines = claude(
        sijo,
        tmp_path,
        f"Read the file {note}, then reply with only the secret word.",
        "--bare",
        "--tools",
        "Read",  # read-only: whatever path the model picks, nothing is written
        "--max-turns",
        "10",
        "--output-format",
        "stream-json",
        "--verbose",  # every message, not only the result
    )
    result = lines[-1]
    # the result of a session that ended on max turns has no `api_error_status` key at all
    assert result["type"] == "result" and result.get("api_error_status") is None, result
    rambled = re.search(r"exceeded the \d+ output token maximum", json.dumps(lines))
    assert status == 0 or rambled or result.get("subtype") == "error_max_turns", result
    calls = blocks(lines, "assistant", "tool_use")
    assert calls and {call["name"] for call in calls} == {"Read"}
    assert all(call["id"].startswith("toolu_") and "file_path" in call["input"] for call in calls)
    results = blocks(lines, "user", "tool_result")  # Claude Code ran each call and sent its result
    assert {r["tool_use_id"] for r in results} == {call["id"] for call in calls}


def test_the_full_prompt_on_an_8k_model_is_a_clean_prompt_too_long(sijo: Server, tmp_path: Path) -> None:
    status, lines = claude(sijo, tmp_path, "Say hello.", "--output-format", "json")
    result = lines[-1]
    assert status != 0 and result["is_error"] is True and result["api_error_status"] == 400, result
    assert result["terminal_reason"] == "prompt_too_long", result
    # Claude Code read the numbers out of Sijo's `prompt is too long: N tokens > 8192 maximum`
    assert re.search(r"Prompt is too long .* ~\d+ tokens \(limit 8192\)", result["result"]), result
