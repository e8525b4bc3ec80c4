"""The official TypeScript SDK (`@anthropic-ai/sdk` from npm) against a real server."""

from __future__ import annotations

from tests.conftest import Server, needs_node, run_node


@needs_node
def test_create_stream_and_errors_with_the_typescript_sdk(server: Server) -> None:
    out = run_node("check.mjs", server, "@anthropic-ai/sdk")
    created, final = out["created"], out["final"]
    assert created["id"].startswith("msg_") and created["model"] == "claude-sonnet-4-6"
    assert created["stop_reason"] in {"end_turn", "max_tokens"} and created["usage"]["output_tokens"] >= 1
    assert final["type"] == "message" and final["stop_reason"] in {"end_turn", "max_tokens"}
    assert out["streamedText"] == "".join(b["text"] for b in final["content"])
    assert out["notFound"]["status"] == 404 and out["notFound"]["type"] == "not_found_error"
    assert out["notFound"]["requestId"].startswith("req_")
