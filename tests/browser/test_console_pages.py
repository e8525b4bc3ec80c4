"""The Console's other pages in a real browser, against a real `sijo serve` (embedded model): the
usage chart and cost follow requests made with the official SDK, a batch made with the SDK is
watched to its end and its results downloaded, and a Workbench request streams in thinking and
text blocks, then its "view as code" runs as written. Screenshots go to test-artifacts/screenshots."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import anthropic
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_console_keys import ADMIN, sign_in
from tests.conftest import Server, start_configured, stop_server

KEY = "sk-ant-api03-browser-pages-test-key-0123456789"
CONFIG = f'admin_keys = ["{ADMIN}"]\napi_keys = ["{KEY}"]\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_configured(tmp_path_factory.mktemp("console-pages"), CONFIG)
    yield running
    stop_server(running)


@pytest.fixture
def sdk(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=KEY, max_retries=0)


def figure(page: Page, element_id: str) -> str:
    return page.locator(f"#{element_id} strong").inner_text()


def test_the_usage_chart_and_cost_follow_the_requests(
    page: Page, server: Server, sdk: anthropic.Anthropic
) -> None:
    sign_in(page, server)
    page.goto(f"{server.base_url}/console/usage?range=24h&group=model")
    before = int(figure(page, "requests-total"))
    for _ in range(3):
        sdk.messages.create(
            model="claude-sonnet-4-6", max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
        )
    page.reload()
    assert int(figure(page, "requests-total")) == before + 3
    assert figure(page, "claude-cost") != "$0.00" and figure(page, "local-cost") == "$0.00"
    bars = page.locator("#tokens-chart g.bar")
    expect(bars).to_have_count(24)
    charted = sum(int(n) for n in bars.evaluate_all("gs => gs.map(g => g.dataset.tokens)"))
    assert charted > 0
    assert page.locator("#usage-groups td.group", has_text="claude-sonnet-4-6").count() == 1
    screenshot(page, "console-usage")


def test_a_batch_is_watched_to_its_end(page: Page, server: Server, sdk: anthropic.Anthropic) -> None:
    params = {
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    batch = sdk.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": params} for i in range(2)])  # type: ignore[misc]
    sign_in(page, server)
    page.goto(f"{server.base_url}/console/batches")
    expect(page.locator(f'tr.batch[data-batch-id="{batch.id}"]')).to_be_visible()
    screenshot(page, "console-batches")
    page.goto(f"{server.base_url}/console/batches/{batch.id}")
    # The page refreshes itself while the batch runs.
    expect(page.locator('#batch[data-status="ended"]')).to_be_visible(timeout=120_000)
    expect(page.locator('td[data-state="succeeded"]')).to_have_text("2")
    screenshot(page, "console-batch")
    with page.expect_download() as download:
        page.click("#download")
    lines = [json.loads(line) for line in open(download.value.path()).read().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["r0", "r1"]


def open_workbench(page: Page, server: Server, prompt: str, max_tokens: int) -> None:
    """The Workbench, signed in, with one user message and its options shown."""
    sign_in(page, server)
    page.goto(f"{server.base_url}/console/workbench")
    page.fill("#max_tokens", str(max_tokens))
    page.fill("#messages .content", prompt)
    page.click("summary")


def test_a_workbench_reply_streams_in_as_blocks_and_its_code_runs(page: Page, server: Server) -> None:
    # Adaptive thinking at low effort thinks about prompts of 40 characters or more, 256 tokens at most.
    open_workbench(
        page, server, "Please explain briefly why the sky looks blue during the day.", max_tokens=300
    )
    page.select_option("#model", "claude-opus-4-7")
    page.select_option("#thinking", "adaptive")
    page.select_option("#effort", "low")
    page.click("#run")
    expect(page.locator("#stop[data-stop-reason]")).to_be_attached(timeout=300_000)
    kinds = page.locator("#reply .block").evaluate_all("bs => bs.map(b => b.dataset.type)")
    stop = page.locator("#stop").get_attribute("data-stop-reason")
    # thinking, then the answer's text: none only when the model ended its turn at once
    assert kinds[0] == "thinking" and set(kinds[1:]) <= {"text"}, kinds
    assert "text" in kinds or stop == "end_turn", (kinds, stop)
    assert page.locator('#reply .block[data-type="thinking"] .body').inner_text().strip()
    screenshot(page, "console-workbench")

    code = page.locator("#code-python").inner_text()
    assert "thinking=" in code and "claude-opus-4-7" in code
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY}
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert ran.returncode == 0, ran.stderr
    printed = re.findall(r"\b(\w+Block)\(", ran.stdout)
    assert printed[0] == "ThinkingBlock" and set(printed[1:]) <= {"TextBlock"}, ran.stdout
    for tab in ("typescript", "curl"):
        page.click(f'.tab[data-tab="{tab}"]')
        expect(page.locator(f"#code-{tab}")).to_be_visible()
    assert re.search(r'"model": "claude-opus-4-7"', page.locator("#code-curl").inner_text())


def test_a_forced_tool_call_streams_its_input(page: Page, server: Server) -> None:
    open_workbench(page, server, "What is the weather in Paris?", max_tokens=120)
    tool = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    page.fill("#tools", json.dumps([tool]))
    choice = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    page.fill("#tool_choice", json.dumps(choice))
    page.click("#run")
    expect(page.locator('#stop[data-stop-reason="tool_use"]')).to_be_attached(timeout=120_000)
    block = page.locator('#reply .block[data-type="tool_use"]')
    expect(block).to_have_count(1)
    assert "city" in json.loads(block.locator(".body").inner_text())
    screenshot(page, "console-workbench-tool")


def test_a_workbench_error_is_shown_as_the_api_words_it(page: Page, server: Server) -> None:
    open_workbench(page, server, "Hi", max_tokens=16)
    page.fill("#tools", json.dumps([{"name": "no_schema"}]))
    page.click("#run")
    error = page.locator('#reply .block[data-type="error"]')
    expect(error).to_contain_text("invalid_request_error")
    expect(error).to_contain_text("input_schema")
