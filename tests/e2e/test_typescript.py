"""The official TypeScript SDK (`@anthropic-ai/sdk` from npm) against a real server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Server

TS = Path(__file__).parent / "ts"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_create_stream_and_errors_with_the_typescript_sdk(server: Server) -> None:
    assert (TS / "node_modules" / "@anthropic-ai" / "sdk").is_dir(), "run `make test` to install it"
    result = subprocess.run(
        ["node", "check.mjs"],
        cwd=TS,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    created, final = out["created"], out["final"]
    assert created["id"].startswith("msg_") and created["model"] == "claude-sonnet-4-6"
    assert created["stop_reason"] in {"end_turn", "max_tokens"} and created["usage"]["output_tokens"] >= 1
    assert final["type"] == "message" and final["stop_reason"] in {"end_turn", "max_tokens"}
    assert out["streamedText"] == "".join(b["text"] for b in final["content"])
    assert out["notFound"]["status"] == 404 and out["notFound"]["type"] == "not_found_error"
    assert out["notFound"]["requestId"].startswith("req_")
