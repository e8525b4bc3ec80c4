"""Server tools through the real server, the real model and the official SDK (issue 13).

Documents go into the search index the way a user adds them (`sijo search add`, into the shared
server's data directory). The model is made to call each tool with `tool_choice` naming it, as the
API allows; what it writes in the call is its own, so the checks are on the API's block sequence,
ids and invariants: a `server_tool_use`, its result block answering it, the reply going on in the
same message, streamed and not, and the blocks accepted when sent back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from sijo.tools.runner import MAX_QUERY_CHARS
from tests.conftest import Server, start_configured, stop_server

MODEL = "claude-haiku-4-5"
SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
CODE = {"type": "code_execution_20250825", "name": "code_execution"}


@pytest.fixture(scope="module")
def indexed(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three documents added to the shared server's index with the CLI."""
    docs = tmp_path_factory.mktemp("docs")
    (docs / "kimchi.md").write_text("# Kimchi\n\nKimchi is a Korean dish of fermented cabbage and radish.\n")
    (docs / "hallasan.txt").write_text("Hallasan is a volcano on Jeju island in Korea, 1,947 metres high.\n")
    (docs / "hangul.html").write_text(
        "<html><head><title>Hangul</title></head><body><p>Hangul is the Korean alphabet, made in 1443.</p></body></html>"
    )
    data = server.log.parent / "data"
    env = {**os.environ, "SIJO_DATA_DIR": str(data)}
    added = subprocess.run(
        [sys.executable, "-m", "sijo", "search", "add", str(docs)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "sijo", "search", "list"], env=env, capture_output=True, text=True, check=True
    )
    assert "kimchi.md" in listed.stdout and "Hangul" in listed.stdout
    return docs


def _search(sdk: anthropic.Anthropic, **extra: Any) -> anthropic.types.Message:
    return sdk.messages.create(
        model=MODEL,
        max_tokens=160,
        messages=[{"role": "user", "content": "Search the web: what is kimchi?"}],
        tools=[SEARCH],
        tool_choice={"type": "tool", "name": "web_search"},
        **extra,
    )


def _check_search(message: anthropic.types.Message, docs: Path) -> None:
    use, result, *rest = message.content
    assert use.type == "server_tool_use" and use.id.startswith("srvtoolu_") and use.name == "web_search"
    assert isinstance(use.input, dict) and isinstance(use.input.get("query"), str)
    assert result.type == "web_search_tool_result" and result.tool_use_id == use.id
    if isinstance(result.content, list):
        for found in result.content:
            assert found.type == "web_search_result" and found.encrypted_content
            assert found.url.startswith("file://") and found.url.endswith((".md", ".txt", ".html"))
            assert Path(found.url.removeprefix("file://")).parent == docs.resolve()
    else:  # the query is the model's to write: an empty one, or one too long
        query = use.input["query"]
        expected = "invalid_tool_input" if not query.strip() else "query_too_long"
        assert len(query) > MAX_QUERY_CHARS or not query.strip()
        assert result.content.error_code == expected
    assert all(block.type in ("text", "server_tool_use", "web_search_tool_result") for block in rest)
    assert message.stop_reason in ("end_turn", "max_tokens", "pause_turn")
    assert message.usage.server_tool_use is not None
    # the model may search again (max_uses is 2): each search that ran is counted, a refused one is not
    searched = [b for b in message.content if b.type == "web_search_tool_result" and isinstance(b.content, list)]
    assert message.usage.server_tool_use.web_search_requests == len(searched)


def test_web_search_over_the_local_index_streamed_and_not(sdk: anthropic.Anthropic, indexed: Path) -> None:
    created = _search(sdk)
    _check_search(created, indexed)
    with sdk.messages.stream(
        model=MODEL,
        max_tokens=160,
        messages=[{"role": "user", "content": "Search the web: what is kimchi?"}],
        tools=[SEARCH],
        tool_choice={"type": "tool", "name": "web_search"},
    ) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    _check_search(streamed, indexed)
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    # The second turn sends every block back, sealed page text included.
    second = sdk.messages.create(
        model=MODEL,
        max_tokens=20,
        messages=[
            {"role": "user", "content": "Search the web: what is kimchi?"},
            {"role": "assistant", "content": streamed.content},
            {"role": "user", "content": "Thanks. One word?"},
        ],
        tools=[SEARCH],
    )
    assert second.stop_reason in ("end_turn", "max_tokens", "pause_turn", "tool_use")


def test_code_execution_in_a_container_that_the_next_request_reuses(sdk: anthropic.Anthropic) -> None:
    def run(**extra: Any) -> anthropic.types.Message:
        return sdk.messages.create(
            model=MODEL,
            max_tokens=120,
            messages=[{"role": "user", "content": "Print the numbers 1 to 3 with a shell command."}],
            tools=[CODE],
            tool_choice={"type": "tool", "name": "code_execution"},
            **extra,
        )

    first = run()
    use, result, *_ = first.content
    assert use.type == "server_tool_use" and use.name in ("bash_code_execution", "text_editor_code_execution")
    expected = {
        "bash_code_execution": "bash_code_execution_tool_result",
        "text_editor_code_execution": "text_editor_code_execution_tool_result",
    }
    assert result.type == expected[use.name] and result.tool_use_id == use.id
    assert result.content.type != "bash_code_execution_tool_result_error" or result.content.error_code in (
        "invalid_tool_input",
        "execution_time_exceeded",
    )
    assert first.container is not None and first.container.id.startswith("container_")
    again = run(container=first.container.id)
    assert again.container is not None and again.container.id == first.container.id
    with pytest.raises(anthropic.BadRequestError, match="container"):
        run(container="container_unknown")


def test_count_tokens_with_server_tools(sdk: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "Hello"}]
    plain = sdk.messages.count_tokens(model=MODEL, messages=messages).input_tokens
    with_tools = sdk.messages.count_tokens(model=MODEL, messages=messages, tools=[SEARCH, CODE]).input_tokens
    assert with_tools > plain


def test_web_fetch_refuses_loopback_on_a_default_server(sdk: anthropic.Anthropic) -> None:
    """The shared server has no `fetch_allow`: a page on 127.0.0.1 named by the user is not fetched,
    whatever URL the model writes (another one is not in the conversation)."""
    url = "http://127.0.0.1:9/notes.html"
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=120,
        messages=[{"role": "user", "content": f"Fetch {url} and summarise it."}],
        tools=[{"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 1}],
        tool_choice={"type": "tool", "name": "web_fetch"},
    )
    use, result, *rest = message.content
    assert use.type == "server_tool_use" and use.name == "web_fetch" and use.id.startswith("srvtoolu_")
    assert result.type == "web_fetch_tool_result" and result.tool_use_id == use.id
    assert result.content.type == "web_fetch_tool_result_error"
    if use.input.get("url") == url:  # the page the user named: on loopback, which it may not reach
        assert result.content.error_code == "url_not_allowed"
    else:  # a URL of the model's own making, or none (`url.` is the user's too, and refused alike)
        refusals = {"url_not_in_prior_context", "invalid_tool_input", "url_too_long", "url_not_allowed"}
        assert result.content.error_code in refusals
    assert message.usage.server_tool_use is not None and message.usage.server_tool_use.web_fetch_requests == 0
    assert all(block.type in ("text", "server_tool_use", "web_fetch_tool_result") for block in rest)


@pytest.fixture(scope="module")
def pausing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose replies pause after one server tool call."""
    running = start_configured(tmp_path_factory.mktemp("pausing"), "[server_tools]\nmax_iterations = 1\n")
    yield running
    stop_server(running)


def test_pause_turn_and_sending_it_back_continues(pausing: Server) -> None:
    sdk = anthropic.Anthropic(base_url=pausing.base_url, api_key=pausing.api_key, max_retries=0)
    question: Any = [{"role": "user", "content": "Search the web for kimchi."}]
    paused = sdk.messages.create(
        model=MODEL,
        max_tokens=160,
        messages=question,
        tools=[SEARCH],
        tool_choice={"type": "tool", "name": "web_search"},
    )
    assert paused.stop_reason == "pause_turn"
    assert [block.type for block in paused.content] == ["server_tool_use", "web_search_tool_result"]
    resumed = sdk.messages.create(
        model=MODEL,
        max_tokens=16,
        messages=[*question, {"role": "assistant", "content": paused.content}],
        tools=[SEARCH],
        tool_choice={"type": "none"},
    )
    assert resumed.stop_reason in ("end_turn", "max_tokens")
    assert all(block.type == "text" for block in resumed.content)  # an answer: no new call
