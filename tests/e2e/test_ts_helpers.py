"""The TypeScript SDK's helpers against a real server: the beta tool runner (threads refused the
API's way, so it falls back by itself), the stream helper and `beta.messages.parse` (issue 11)."""

from __future__ import annotations

from tests.conftest import Server, needs_node, run_node


@needs_node
def test_tool_runner_stream_and_parse_helpers(server: Server) -> None:
    out = run_node("helpers.mjs", server, "@anthropic-ai/sdk")
    # the runner ran the forced tool with valid input, then sent its result back for a second turn
    assert out["ran"] and all(call["unit"] in {"celsius", "fahrenheit"} for call in out["ran"])
    assert out["turns"][0]["stop_reason"] == "tool_use" and "tool_use" in out["turns"][0]["types"]
    assert len(out["turns"]) == 2
    # it asked for a thread first; refused the API's way, it went on without one by itself
    runner = [r for r in out["sent"] if r["path"] == "/v1/messages"][:3]
    assert runner[0] == {"path": "/v1/messages", "thread": True, "status": 400}
    assert [r["thread"] for r in runner[1:]] == [False, False] and {r["status"] for r in runner[1:]} == {200}
    stream = out["stream"]
    assert stream["seen"][0] == "message_start" and stream["seen"][-1] == "message_stop"
    assert stream["streamed"] == "".join(b["text"] for b in stream["final"]["content"] if b["type"] == "text")
    parsed = out["parsed"]
    # an enum and a boolean: the object always fits its 60 tokens whole, so it always parses
    assert parsed["stop_reason"] == "end_turn"
    assert parsed["output"]["city"] in {"Seoul", "Busan", "Paris"} and isinstance(parsed["output"]["capital"], bool)
