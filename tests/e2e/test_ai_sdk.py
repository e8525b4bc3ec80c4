"""The Vercel AI SDK (`ai` + `@ai-sdk/anthropic` from npm, pinned in ts/package.json) against a real
server: `generateText`, `streamText`, a forced tool call and `generateObject` with a zod schema.
Structure is asserted, never what the model says."""

from __future__ import annotations

from tests.conftest import Server, needs_node, run_node


@needs_node
def test_generate_stream_tool_and_object_with_the_ai_sdk(server: Server) -> None:
    out = run_node("ai_sdk.mjs", server, "@ai-sdk/anthropic")
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
    assert set(person) == {"name", "likesTea"} and person["name"] in {"Ada", "Grace", "Linus"}
    assert isinstance(person["likesTea"], bool)
