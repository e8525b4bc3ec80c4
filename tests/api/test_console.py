"""The Console in process (fake engine): sessions, CSRF, the security headers, API keys shown once,
the audit log. The browser tests (tests/browser) drive the same pages through Chromium."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sijo.app import create_app
from sijo.config import BatchConfig, Settings
from sijo.engines.fake import FakeEngine

ADMIN = "sk-ant-admin01-console-test-admin-key-0123456789"
API_HEADERS = {"anthropic-version": "2023-06-01"}
BODY = {"model": "claude-sonnet-4-6", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


async def _client(settings: Settings, engine: FakeEngine | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engines={"default": engine or FakeEngine()})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            client.app = app  # type: ignore[attr-defined]  # the stores, for what the Console cannot do
            yield client


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(Settings(admin_keys=[ADMIN], data_dir=tmp_path)):
        yield client


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(delay=0.01)


@pytest.fixture
async def busy_console(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A console whose engine takes 10 ms a token, and runs one batch request at a time."""
    settings = Settings(admin_keys=[ADMIN], data_dir=tmp_path, batches=BatchConfig(concurrency=1))
    async for client in _client(settings, engine):
        yield client


@pytest.fixture
async def open_console(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server of its own database, where no key exists yet."""
    async for client in _client(Settings(data_dir=tmp_path)):
        yield client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def _sign_in(client: httpx.AsyncClient) -> str:
    response = await client.post("/console/sign-in", data={"admin_key": ADMIN})
    assert response.status_code == 303
    return _csrf((await client.get("/console/keys")).text)


async def _create_key(
    client: httpx.AsyncClient, csrf: str, name: str, workspace: str = "team-a"
) -> tuple[str, str]:
    response = await client.post(
        "/console/keys", data={"csrf_token": csrf, "name": name, "workspace": workspace}
    )
    assert response.status_code == 303  # post/redirect/get: a reload cannot make a second key
    shown = (await client.get(response.headers["location"])).text
    secret = re.search(r'id="new-key-secret">([^<]+)<', shown)
    key_id = re.search(r'data-key-id="([^"]+)"', shown)
    assert secret and key_id
    return key_id.group(1), secret.group(1)


async def test_pages_need_a_session_and_sign_in_takes_only_an_admin_key(console: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/keys", "/console/audit"):
        response = await console.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/console/sign-in"

    wrong = await console.post("/console/sign-in", data={"admin_key": "sk-ant-admin01-wrong"})
    assert wrong.status_code == 401 and "admin_key" in wrong.text
    assert "set-cookie" not in wrong.headers
    empty = await console.post("/console/sign-in", data={"admin_key": ""})
    assert empty.status_code == 400

    signed = await console.post("/console/sign-in", data={"admin_key": ADMIN})
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert (await console.get("/console")).status_code == 200


async def test_every_page_carries_the_security_headers(console: httpx.AsyncClient) -> None:
    await _sign_in(console)
    for path in ("/console", "/console/keys", "/console/audit", "/console/sign-in"):
        headers = (await console.get(path)).headers
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy
        assert headers["cache-control"] == "no-store"
        assert headers["x-frame-options"] == "DENY"


async def test_a_key_is_shown_once_works_and_stops_working_when_deactivated(
    console: httpx.AsyncClient,
) -> None:
    csrf = await _sign_in(console)
    key_id, secret = await _create_key(console, csrf, "ci")
    assert secret.startswith("sk-sijo-api01-")

    listing = (await console.get("/console/keys")).text
    assert secret not in listing and key_id in listing and "team-a" in listing  # shown once

    assert re.search(r'<td class="last-used">—</td>', listing)  # never used yet
    served = await console.post("/v1/messages", json=BODY, headers={**API_HEADERS, "x-api-key": secret})
    assert served.status_code == 200
    used = (await console.get("/console/keys")).text
    assert re.search(r'<td class="last-used">\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>', used)

    changed = await console.post(f"/console/keys/{key_id}", data={"csrf_token": csrf, "action": "deactivate"})
    assert changed.status_code == 303
    refused = await console.post("/v1/messages", json=BODY, headers={**API_HEADERS, "x-api-key": secret})
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"

    renamed = await console.post(
        f"/console/keys/{key_id}", data={"csrf_token": csrf, "action": "rename", "name": "renamed"}
    )
    assert renamed.status_code == 303
    assert 'value="renamed"' in (await console.get("/console/keys")).text


async def test_a_form_without_its_csrf_token_changes_nothing(console: httpx.AsyncClient) -> None:
    csrf = await _sign_in(console)
    for token in ("", "forged", csrf[:-1]):
        refused = await console.post("/console/keys", data={"csrf_token": token, "name": "sneaky"})
        assert refused.status_code == 403
    assert "sneaky" not in (await console.get("/console/keys")).text

    key_id, secret = await _create_key(console, csrf, "kept")
    refused = await console.post(f"/console/keys/{key_id}", data={"action": "deactivate"})
    assert refused.status_code == 403
    served = await console.post("/v1/messages", json=BODY, headers={**API_HEADERS, "x-api-key": secret})
    assert served.status_code == 200


async def test_admin_actions_are_audited_without_secrets(console: httpx.AsyncClient) -> None:
    csrf = await _sign_in(console)
    key_id, secret = await _create_key(console, csrf, "audited")
    await console.post(f"/console/keys/{key_id}", data={"csrf_token": csrf, "action": "deactivate"})

    page = (await console.get("/console/audit")).text
    actions = re.findall(r'class="action">([^<]+)<', page)
    assert actions[:3] == ["api_key.deactivate", "api_key.create", "console.sign_in"]
    assert secret not in page and ADMIN not in page


async def test_sign_out_ends_the_session(console: httpx.AsyncClient) -> None:
    csrf = await _sign_in(console)
    signed_out = await console.post("/console/sign-out", data={"csrf_token": csrf})
    assert signed_out.status_code == 303
    assert (await console.get("/console")).status_code == 303


async def test_without_any_key_the_console_is_open_to_loopback(open_console: httpx.AsyncClient) -> None:
    response = await open_console.get("/console/keys")
    assert response.status_code == 200
    assert "httponly" in response.headers["set-cookie"].lower()
    csrf = _csrf(response.text)
    await _create_key(open_console, csrf, "first")
    # Now a key exists: a new visitor must sign in (there is no admin key yet, so nobody can).
    open_console.cookies.clear()
    assert (await open_console.get("/console")).status_code == 303


async def test_a_form_that_is_not_a_form_is_refused_cleanly(console: httpx.AsyncClient) -> None:
    response = await console.post("/console/sign-in", json={"admin_key": ADMIN})
    assert response.status_code == 400 and "content-type" in response.text
    huge = await console.post("/console/sign-in", data={"admin_key": "x" * 70_000})
    assert huge.status_code == 413
    csrf = await _sign_in(console)
    for name in ("a\x00b", "line\x1bescape"):
        refused = await console.post("/console/keys", data={"csrf_token": csrf, "name": name})
        assert refused.status_code == 400 and "control characters" in refused.text
    for path in ("/console/keys/%00", "/console/keys/apikey_nope"):
        missing = await console.post(path, data={"csrf_token": csrf, "action": "deactivate"})
        assert missing.status_code == 404
    assert (await console.get("/console/batches/%00")).status_code == 404
    assert (await console.get("/console/usage", params={"group": "nope"})).status_code == 400


async def test_the_usage_page_counts_and_prices_what_a_key_did(console: httpx.AsyncClient) -> None:
    csrf = await _sign_in(console)
    _, secret = await _create_key(console, csrf, "counted")
    replies = []
    for _ in range(3):
        response = await console.post("/v1/messages", json=BODY, headers={**API_HEADERS, "x-api-key": secret})
        replies.append(response.json()["usage"])
    spent = sum(usage["input_tokens"] + usage["output_tokens"] for usage in replies)

    page = await console.get("/console/usage", params={"range": "24h", "group": "key"})
    assert page.status_code == 200
    row = re.search(r'<td class="group">counted \(([^)]+)\)</td><td>(\d+)</td>', page.text)
    assert row and row.group(2) == "3"
    charted = sum(
        int(n) for n in re.findall(r'<g class="bar" data-start="[^"]+" data-tokens="(\d+)"', page.text)
    )
    assert charted == spent
    claude = re.search(r'id="claude-cost">.*?<strong>([^<]+)</strong>', page.text, re.S)
    assert claude and claude.group(1) not in ("$0.00", "$0.0000")

    refused = await console.get("/console/usage", params={"range": "1y"})
    assert refused.status_code == 400 and "range" in refused.text


async def _batch(client: httpx.AsyncClient, secret: str, count: int, max_tokens: int = 4) -> str:
    requests = [{"custom_id": f"r{i}", "params": {**BODY, "max_tokens": max_tokens}} for i in range(count)]
    headers = {**API_HEADERS, "x-api-key": secret}
    created = await client.post("/v1/messages/batches", json={"requests": requests}, headers=headers)
    assert created.status_code == 200
    return str(created.json()["id"])


async def _console_status(client: httpx.AsyncClient, batch_id: str, wanted: str) -> str:
    for _ in range(500):
        html = (await client.get(f"/console/batches/{batch_id}")).text
        if f'data-status="{wanted}"' in html:
            return html
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} never showed {wanted}")


async def test_batches_show_their_progress_and_results(busy_console: httpx.AsyncClient) -> None:
    csrf = await _sign_in(busy_console)
    _, secret = await _create_key(busy_console, csrf, "batcher")
    batch_id = await _batch(busy_console, secret, 3)

    listing = (await busy_console.get("/console/batches")).text
    assert f'data-batch-id="{batch_id}"' in listing
    detail = await _console_status(busy_console, batch_id, "ended")
    assert '<td data-state="succeeded">3</td>' in detail and 'http-equiv="refresh"' not in detail

    results = await busy_console.get(f"/console/batches/{batch_id}/results")
    assert results.status_code == 200 and "attachment" in results.headers["content-disposition"]
    lines = [json.loads(line) for line in results.text.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["r0", "r1", "r2"]
    assert {line["result"]["type"] for line in lines} == {"succeeded"}


async def test_a_batch_is_canceled_from_the_console(
    busy_console: httpx.AsyncClient, engine: FakeEngine
) -> None:
    csrf = await _sign_in(busy_console)
    _, secret = await _create_key(busy_console, csrf, "batcher")
    engine.enqueue(["x"] * 300)  # the first request runs ~3 s; the others wait behind it
    batch_id = await _batch(busy_console, secret, 4, max_tokens=300)
    running = await _console_status(busy_console, batch_id, "in_progress")
    assert 'http-equiv="refresh"' in running  # the page follows the batch by itself
    for _ in range(500):  # "in_progress" comes at once; wait for the worker to hand the engine a request
        if engine.active:
            break
        await asyncio.sleep(0.01)
    assert engine.active == 1

    forged = await busy_console.post(f"/console/batches/{batch_id}/cancel", data={"csrf_token": "x"})
    assert forged.status_code == 403
    canceled = await busy_console.post(f"/console/batches/{batch_id}/cancel", data={"csrf_token": csrf})
    assert canceled.status_code == 303
    detail = await _console_status(busy_console, batch_id, "ended")
    assert '<td data-state="canceled">3</td>' in detail
    assert "batch.cancel" in (await busy_console.get("/console/audit")).text


async def test_the_workbench_streams_a_reply_to_its_own_page_only(console: httpx.AsyncClient) -> None:
    csrf = await _sign_in(console)
    page = await console.get("/console/workbench")
    assert page.status_code == 200 and 'name="csrf-token"' in page.text and "claude-sonnet-4-6" in page.text

    body = {**BODY, "stream": False}
    refused = await console.post("/console/workbench/messages", json=body)
    assert refused.status_code == 403
    forged = await console.post("/console/workbench/messages", json=body, headers={"x-csrf-token": "nope"})
    assert forged.status_code == 403

    headers = {"x-csrf-token": csrf}
    async with console.stream("POST", "/console/workbench/messages", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
    names = re.findall(r"^event: (\w+)$", text, re.M)
    assert names[0] == "message_start" and names[-1] == "message_stop" and "content_block_delta" in names

    bad = await console.post(
        "/console/workbench/messages", json={"model": "claude-sonnet-4-6"}, headers=headers
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in bad.json()["error"]["message"]
    assert "workbench.run" in (await console.get("/console/audit")).text


async def test_the_overview_shows_the_engines_and_models(console: httpx.AsyncClient) -> None:
    await _sign_in(console)
    page = await console.get("/console")
    assert page.status_code == 200
    assert 'data-engine="default"' in page.text and "<code>claude-sonnet-4-6</code>" in page.text


async def test_sessions_end_with_what_granted_them(open_console: httpx.AsyncClient) -> None:
    opened = await open_console.get("/console/keys")  # open: no key exists
    await _create_key(open_console, _csrf(opened.text), "first")
    assert "now-closed" not in (await open_console.get("/console/keys")).text  # said once, with the secret
    # Whoever made the first key goes on; the open session's cookie, or none, no longer gets in.
    assert (await open_console.get("/console")).status_code == 200
    stale = {"sijo_console": opened.cookies["sijo_console"]}
    transport = open_console._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", cookies=stale) as other:
        assert (await other.get("/console")).status_code == 303
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as newcomer:
        assert (await newcomer.get("/console")).status_code == 303

    keys = open_console.app.state.keys  # type: ignore[attr-defined]
    admin, secret = keys.create("ops", kind="admin")
    open_console.cookies.clear()
    signed = await open_console.post("/console/sign-in", data={"admin_key": secret})
    assert signed.status_code == 303 and (await open_console.get("/console")).status_code == 200
    audit = (await open_console.get("/console/audit")).text
    assert f"admin key ops ({admin.id})" in audit and secret not in audit
    keys.update(admin.id, status="inactive")
    assert (await open_console.get("/console")).status_code == 303


async def test_failed_sign_ins_are_audited_and_slowed(console: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await console.post("/console/sign-in", data={"admin_key": "guess"})).status_code == 401
    blocked = await console.post("/console/sign-in", data={"admin_key": ADMIN})
    assert blocked.status_code == 429
    console.app.state.console_attempts = type(console.app.state.console_attempts)()  # type: ignore[attr-defined]
    await _sign_in(console)
    audit = (await console.get("/console/audit")).text
    assert audit.count("console.sign_in_failed") == 5 and ADMIN[-8:] not in audit


async def test_another_origin_cannot_read_the_console(open_console: httpx.AsyncClient) -> None:
    headers = {"origin": "http://evil.example", "anthropic-dangerous-direct-browser-access": "true"}
    for path in ("/console", "/console/usage", "/console/audit"):
        response = await open_console.get(path, headers=headers)
        assert response.status_code == 403 and "access-control-allow-origin" not in response.headers
    forwarded = await open_console.get("/console", headers={"x-forwarded-for": "203.0.113.9"})
    assert forwarded.status_code == 303  # a proxy in front: the caller is not on loopback


async def test_keys_keep_their_workspace_and_archived_ones_stay_archived(console: httpx.AsyncClient) -> None:
    csrf = await _sign_in(console)
    key_id, _ = await _create_key(console, csrf, "plain", workspace="Default")
    keys = console.app.state.keys  # type: ignore[attr-defined]
    assert keys.get(key_id).workspace_id is None and keys.workspaces() == []
    keys.update(key_id, status="archived")
    page = (await console.get("/console/keys")).text
    assert "Activate" not in page
    refused = await console.post(f"/console/keys/{key_id}", data={"csrf_token": csrf, "action": "activate"})
    assert refused.status_code == 409 and keys.get(key_id).status == "archived"


async def test_the_workbench_answers_a_script_in_the_api_shape(console: httpx.AsyncClient) -> None:
    unsigned = await console.post("/console/workbench/messages", json=BODY, headers={"x-csrf-token": "x"})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["type"] == "authentication_error"
    await _sign_in(console)
    forged = await console.post("/console/workbench/messages", json=BODY, headers={"x-csrf-token": "x"})
    assert forged.status_code == 403 and forged.json()["error"]["type"] == "permission_error"
