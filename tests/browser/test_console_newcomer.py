"""The issue's newcomer, in a real browser against a real `sijo serve` with no key configured (what
`make serve` starts): open the Console on loopback, make the first key, try a prompt in the
Workbench, and see the usage and what it would have cost on the Claude API."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.conftest import Server, start_keyless, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_keyless(tmp_path_factory.mktemp("newcomer"))  # it makes a key: a server of its own
    yield running
    stop_server(running)


def test_a_newcomer_makes_a_key_tries_a_prompt_and_sees_the_cost(page: Page, server: Server) -> None:
    page.goto(f"{server.base_url}/console")
    expect(page).to_have_url(f"{server.base_url}/console")  # no key yet: open to loopback
    page.click("nav >> text=API keys")
    page.fill("#create-key input[name=name]", "my-first-key")
    page.click("#create-key button[type=submit]")
    expect(page.locator("#now-closed")).to_be_visible()
    secret = page.locator("#new-key-secret").inner_text().strip()

    page.click("nav >> text=Workbench")
    page.select_option("#model", "claude-sonnet-4-6")
    page.fill("#max_tokens", "8")
    page.fill("#messages .content", "Say hello.")
    page.click("#run")
    expect(page.locator("#stop[data-stop-reason]")).to_be_attached(timeout=120_000)
    expect(page.locator('#reply .block[data-type="text"]')).to_have_count(1)

    page.click("nav >> text=Usage and cost")
    page.click("a >> text=24h")
    assert int(page.locator("#requests-total strong").inner_text()) >= 1
    assert page.locator("#claude-cost strong").inner_text() != "$0.00"
    screenshot(page, "console-newcomer-usage")

    sdk = anthropic.Anthropic(base_url=server.base_url, api_key=secret, max_retries=0)
    reply = sdk.messages.create(
        model="claude-sonnet-4-6", max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.type == "message"
    with pytest.raises(anthropic.AuthenticationError):  # a key exists now: every request needs one
        anthropic.Anthropic(base_url=server.base_url, api_key="sk-wrong", max_retries=0).models.list()
