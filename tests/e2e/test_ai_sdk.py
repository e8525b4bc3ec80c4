"""The Vercel AI SDK (`ai` + `@ai-sdk/anthropic` from npm, pinned in ts/package.json) against a real
server: `generateText`, `streamText`, a forced tool call and `generateObject` with a zod schema.
Structure is asserted, never what the model says."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Server

TS = Path(__file__).parent / "ts"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_generate_stream_tool_and_object_with_the_ai_sdk(server: Server) -> None:
    assert (TS / "node_modules" / "@ai-sdk" / "anthropic").is_dir(), "run `make test` to install it"
    result = subprocess.run(
        ["node", "ai_sdk.mjs"],
        cwd=TS,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    failed = {name: check for name, check in out.items() if not check["ok"]}
    assert not failed, failed

    generated, streamed = out["generated"], out["streamed"]
    assert generated["finishReason"] in {"stop", "length"} and generated["usage"]["outputTokens"] >= 1
    assert generated["usage"]["inputTokens"] >= 1
    assert streamed["finishReason"] in {"stop", "length"} and streamed["deltas"] == streamed["text"]

    called = out["called"]
    assert called["finishReason"] == "tool-calls"
    assert [call["toolName"] for call in called["toolCalls"]] == ["weather"]
    call = called["toolCalls"][0]
    assert call["toolCallId"].startswith("toolu_") and isinstance(call["input"]["city"], str)

    person = out["object"]["object"]
    assert set(person) == {"name", "age"} and isinstance(person["name"], str)
    assert isinstance(person["age"], int)
