"""A server with API keys and a small context window; disconnects; the CLI's refusal to bind openly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import HEADERS, Server, start_server, stop_server

KEYS = "sk-sijo-test-one,sk-sijo-test-two"
WINDOW = 256
STORY = [{"role": "user", "content": "Count from one to one thousand, in words."}]
# Greedy decoding keeps counting for thousands of tokens (over a minute here) unless stopped.
COUNTING = [
    {"role": "user", "content": "Count from 1 to 1000, separated by commas."},
    {"role": "assistant", "content": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"},
]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("keyed")
    config = tmp / "sijo.toml"
    config.write_text(f"[engines.default]\ncontext_window = {WINDOW}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIJO_", "ANTHROPIC_"))}
    running = start_server(tmp, {**env, "SIJO_API_KEYS": KEYS}, "--config", str(config))
    yield running
    stop_server(running)


def test_missing_and_wrong_keys_are_401(keyed: Server) -> None:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "hi"}],
    }
    missing = httpx.post(f"{keyed.base_url}/v1/messages", headers=HEADERS, json=body)
    assert missing.status_code == 401
    assert missing.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required",
    }
    wrong = anthropic.Anthropic(base_url=keyed.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        wrong.models.list()


def test_either_key_works_by_header_or_bearer(keyed: Server) -> None:
    by_header = anthropic.Anthropic(base_url=keyed.base_url, api_key="sk-sijo-test-two", max_retries=0)
    assert by_header.models.retrieve("claude-sonnet-4-6").max_input_tokens == WINDOW
    bearer = anthropic.Anthropic(base_url=keyed.base_url, auth_token="sk-sijo-test-one", max_retries=0)
    assert bearer.messages.count_tokens(model="claude-sonnet-4-6", messages=STORY).input_tokens > 0  # type: ignore[arg-type]


def test_missing_anthropic_version_is_400(keyed: Server) -> None:
    body = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        f"{keyed.base_url}/v1/messages/count_tokens", json=body, headers={"x-api-key": "sk-sijo-test-one"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "anthropic-version: header is required"


def test_generation_stops_when_the_window_is_full(keyed: Server) -> None:
    client = anthropic.Anthropic(base_url=keyed.base_url, api_key="sk-sijo-test-one", max_retries=0)
    # A long prompt leaves a little room, and a prefill mid-sentence keeps the model writing.
    long = "The dragon is red and it lives on a mountain. " * 18
    messages = [
        {"role": "user", "content": long + "Write a long story about the dragon."},
        {"role": "assistant", "content": "Once upon a time, the red dragon"},
    ]
    message = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=WINDOW,
        messages=messages,
        extra_body={"temperature": 0},  # type: ignore[arg-type]
    )
    assert message.stop_reason == "model_context_window_exceeded"
    assert message.usage.input_tokens + message.usage.output_tokens == WINDOW


def test_prompt_longer_than_the_window_is_rejected(keyed: Server) -> None:
    client = anthropic.Anthropic(base_url=keyed.base_url, api_key="sk-sijo-test-one", max_retries=0)
    long = [{"role": "user", "content": "one two three " * 200}]
    with pytest.raises(
        anthropic.BadRequestError, match=rf"prompt is too long: \d+ tokens > {WINDOW} maximum"
    ):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=1, messages=long)  # type: ignore[arg-type]
    # count_tokens still counts it, as the API does: that is how a client learns it no longer fits
    counted = client.messages.count_tokens(model="claude-sonnet-4-6", messages=long)  # type: ignore[arg-type]
    assert counted.input_tokens > WINDOW


def _engine_idle_within(server: Server, seconds: float) -> bool:
    """Whether the engine has no running or waiting request within `seconds`. A generation that
    went on after its client left would keep running for most of a minute."""
    headers = {**HEADERS, "x-api-key": server.api_key}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        engine = httpx.get(f"{server.base_url}/sijo/status", headers=headers).json()["engines"]["default"]
        if engine["running"] == 0 and engine["waiting"] == 0:
            return True
        time.sleep(0.1)
    return False


def test_a_stream_that_disconnects_stops_its_generation(server: Server) -> None:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 4000,
        "temperature": 0,
        "stream": True,
        "messages": COUNTING,
    }
    headers = {**HEADERS, "x-api-key": server.api_key}
    url = f"{server.base_url}/v1/messages"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
        lines = response.iter_lines()
        while "content_block_delta" not in next(lines):
            pass
    assert _engine_idle_within(server, 5)


def test_a_non_streaming_client_that_gives_up_stops_its_generation(server: Server) -> None:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 4000, "temperature": 0, "messages": COUNTING}
    headers = {**HEADERS, "x-api-key": server.api_key}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/v1/messages", json=body, headers=headers, timeout=1.5)
    assert _engine_idle_within(server, 5)


def test_serve_refuses_an_open_address_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIJO_")}
    result = subprocess.run(
        [sys.executable, "-m", "sijo", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "without API keys" in result.stderr


def test_serve_names_a_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    result = subprocess.run(
        [sys.executable, "-m", "sijo", "serve", "--model", str(missing), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"model file not found: {missing}" in result.stderr
