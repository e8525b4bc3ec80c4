"""The guide's examples, run as a user would: the files unchanged, only ANTHROPIC_BASE_URL/KEY set."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, start_server, stop_server

GUIDE = Path(__file__).parent / "guide"

# example → lines its output must contain (what the example itself prints, not what the model says)
EXPECTED = {
    "quick_start.py": [],  # exit 0 proves message.content[0].text existed
    "basic_usage.py": [
        "Model: claude-sonnet-4-6",
        "Stop reason: ",
        "Input tokens: ",
        "Output tokens: ",
    ],
    "multi_turn.py": ["Claude:"],
    "system_prompt.py": [],  # likewise
    "streaming.py": ["Total tokens: "],
    "advanced_streaming.py": [
        "메시지 시작: claude-sonnet-4-6",
        "콘텐츠 블록 시작",
        "Stop reason: ",
        "메시지 종료",
    ],
}


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_python_example_runs_unchanged(server: Server, example: str) -> None:
    output = _run_in_guide_dir(server, example)
    for expected in EXPECTED[example]:
        assert expected in output


def _run_in_guide_dir(server: Server, example: str) -> str:
    # the document example opens long_document.txt from the working directory
    return run_example(server, example, GUIDE)


def run_example(server: Server, example: str, workdir: Path, timeout: float = 300) -> str:
    """Run the example file `example` in `workdir` as a user would: only ANTHROPIC_BASE_URL/KEY set."""
    result = subprocess.run(
        [sys.executable, example],
        cwd=workdir,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _numbers_after(label: str, output: str) -> list[int]:
    return [int(n) for n in re.findall(re.escape(label) + r"\s*(\d+)", output)]


def test_system_prompt_caching_example_writes_then_reads(server: Server) -> None:
    output = _run_in_guide_dir(server, "prompt_caching.py")
    [created] = _numbers_after("Cache creation tokens:", output)
    read = _numbers_after("Cache read tokens:", output)
    assert created > 1024  # the whole long system prompt was written
    assert read == [0, created]  # first request: nothing read; second: exactly what was written


def test_document_caching_example_writes_then_reads(server: Server) -> None:
    output = _run_in_guide_dir(server, "document_caching.py")
    [created] = _numbers_after("캐시 생성:", output)
    [read] = _numbers_after("캐시 읽기:", output)
    assert created > 1024
    assert read == created
    assert "비용 절감: $" in output


def test_curl_example_returns_a_message(server: Server) -> None:
    result = subprocess.run(
        ["bash", str(GUIDE / "curl_example.sh")],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout)
    assert message["type"] == "message" and message["id"].startswith("msg_")
    assert message["model"] == "claude-sonnet-4-6"
    assert message["stop_reason"] in {"end_turn", "max_tokens"}
    assert message["usage"]["output_tokens"] >= 1


# The tool and thinking examples ask for max_tokens of 1024 to 32000, and a 135M model rarely stops
# on its own: they run on a server with a 1280-token window, so each reply ends within seconds (at
# the window at worst), the files unchanged. The tool loop repeats a request until one ends with
# end_turn; at 3072 tokens a run-on reply took ~50 s and about 2 in 3 ran on, so the loop sometimes
# outlived its timeout; at 1280 a run-on reply takes ~10 s (measured: 6 runs, 3 to 27 s each).
SMALL_WINDOW = {"default": {"context_window": 1280}}


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIJO_")}
    running = start_server(
        tmp_path_factory.mktemp("guide"), {**env, "SIJO_ENGINES": json.dumps(SMALL_WINDOW)}
    )
    yield running
    stop_server(running)


def test_tool_use_example_runs_its_loop_to_the_end(small_server: Server) -> None:
    """The definition snippet, then the loop snippet that continues it: the loop must end."""
    output = _run_in_guide_dir(small_server, "tool_use.py")
    response = json.loads(
        output[output.index("Response: ") + len("Response: ") : output.index("\nStop reason:")]
    )
    assert response["type"] == "message" and response["stop_reason"] in {"end_turn", "tool_use", "max_tokens"}
    assert "Final answer:" in output


def test_adaptive_thinking_example_runs_unchanged(small_server: Server) -> None:
    output = _run_in_guide_dir(small_server, "adaptive_thinking.py")
    assert re.search(r"\[사고 블록: \d+자\]", output)


def test_xhigh_effort_example_runs_unchanged(small_server: Server) -> None:
    output = _run_in_guide_dir(small_server, "xhigh_effort.py")
    assert "Blocks: ['thinking'" in output
