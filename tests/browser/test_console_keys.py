"""The Console's keys in a real browser, against a real `sijo serve` (embedded model): sign in with
an admin key, create an API key and see its secret once, use it from the official SDK, deactivate
it and see the SDK refused; the cookie's flags, the CSRF check and the content security policy as
Chromium applies them. Screenshots go to test-artifacts/screenshots."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.conftest import Server, start_configured, stop_server

ADMIN = "sk-ant-admin01-browser-test-admin-key-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_configured(tmp_path_factory.mktemp("console"), f'admin_keys = ["{ADMIN}"]\n')
    yield running
    stop_server(running)


def sign_in(page: Page, server: Server) -> None:
    page.goto(f"{server.base_url}/console")
    expect(page).to_have_url(f"{server.base_url}/console/sign-in")
    page.fill("#admin_key", ADMIN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.base_url}/console")


def create_key(page: Page, server: Server, name: str) -> str:
    page.goto(f"{server.base_url}/console/keys")
    page.fill("#create-key input[name=name]", name)
    page.fill("#create-key input[name=workspace]", "browser-team")
    page.click("#create-key button[type=submit]")
    secret = page.locator("#new-key-secret")
    expect(secret).to_be_visible()
    return secret.inner_text().strip()


def ask(server: Server, key: str) -> anthropic.types.Message:
    client = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
    return client.messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
    )


def test_a_key_made_in_the_console_is_shown_once_and_obeys_it(page: Page, server: Server) -> None:
    page.goto(f"{server.base_url}/console")
    screenshot(page, "console-sign-in")
    sign_in(page, server)
    expect(page.locator("#engines tr.engine[data-engine=default]")).to_be_visible()
    screenshot(page, "console-overview")

    cookie = next(c for c in page.context.cookies() if c["name"] == "sijo_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it

    secret = create_key(page, server, "from-the-browser")
    screenshot(page, "console-key-created")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("button.copy")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    reply = ask(server, secret)
    assert reply.type == "message" and reply.usage.output_tokens >= 1

    page.goto(f"{server.base_url}/console/keys")
    assert secret not in page.content()  # shown once
    row = page.locator("tr.key", has_text="browser-team").filter(
        has=page.locator("input[value=from-the-browser]")
    )
    expect(row.locator("td.status")).to_have_text("active")
    row.locator("button", has_text="Deactivate").click()
    expect(row.locator("td.status")).to_have_text("inactive")
    screenshot(page, "console-keys")

    with pytest.raises(anthropic.AuthenticationError):
        ask(server, secret)

    page.goto(f"{server.base_url}/console/audit")
    actions = page.locator("td.action").all_inner_texts()
    assert actions[:3] == ["api_key.deactivate", "api_key.create", "console.sign_in"]
    screenshot(page, "console-audit")


class _Attacker(BaseHTTPRequestHandler):
    """A page on another origin that posts a form to the Console as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        body = (
            f'<form id="f" method="post" action="{self.target}/console/keys">'
            '<input name="name" value="planted"><input name="csrf_token" value="guessed"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_a_form_posted_from_another_page_changes_nothing(page: Page, server: Server) -> None:
    sign_in(page, server)
    _Attacker.target = server.base_url
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://localhost:{attacker.server_address[1]}/")
        page.wait_for_url(f"{server.base_url}/console/**")
        page.wait_for_load_state()
        screenshot(page, "console-csrf-refused")
        assert "planted" not in page.content()
    finally:
        attacker.shutdown()
    page.goto(f"{server.base_url}/console/keys")
    assert page.locator("input[value=planted]").count() == 0


def test_the_pages_run_no_inline_script(page: Page, server: Server) -> None:
    sign_in(page, server)
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if message.type == "error" else None)
    page.goto(f"{server.base_url}/console/keys")
    # A script injected into the page (as an XSS would be) is blocked by the content security policy.
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        " document.body.appendChild(s); }"
    )
    assert page.evaluate("window.injected") is None
    assert any("Content Security Policy" in text for text in refused)
