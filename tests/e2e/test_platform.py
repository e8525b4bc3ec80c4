"""The durable platform through real servers, the real model and the official SDK, on SQLite and
(when configured) PostgreSQL: keys made with `sijo keys`, batches end to end, a batch that survives
SIGKILL, revocation, workspace isolation, rate limits the SDK retries, usage and cost reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import HEADERS, Server, start_server, stop_server, wait_until_ended
from tests.databases import KINDS, empty_database

DOCUMENT = (Path(__file__).parent / "guide" / "long_document.txt").read_text()
HI = [{"role": "user", "content": "Hi"}]


@dataclass
class Deployment:
    """A data directory and database, with keys made by the CLI, that servers can be started on."""

    kind: str
    tmp: Path
    env: dict[str, str]
    database_url: str
    keys: dict[str, str]

    def sijo(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "sijo", *args], env=self.env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def create_key(self, name: str, *options: str) -> str:
        return self.sijo("keys", "create", "--name", name, *options).splitlines()[-1]

    def start(self, *extra: tuple[str, str]) -> Server:
        server = start_server(self.tmp, {**self.env, **dict(extra)})
        return Server(server.base_url, self.keys["alpha"], server.process, server.log)

    def client(self, server: Server, key: str, **options: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=server.base_url, api_key=self.keys[key], **options)


@contextmanager
def deploy(kind: str, tmp: Path) -> Iterator[Deployment]:
    """A fresh data directory and database of `kind`, with keys made by the CLI."""
    with empty_database(kind, tmp) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIJO_", "ANTHROPIC_"))}
        env |= {"SIJO_DATA_DIR": str(tmp / "data"), "SIJO_DATABASE_URL": url}
        deployment = Deployment(kind, tmp, env, url, {})
        deployment.keys = {
            "alpha": deployment.create_key("alpha", "--workspace", "alpha"),
            "alpha2": deployment.create_key("alpha-two", "--workspace", "alpha"),
            "beta": deployment.create_key("beta", "--workspace", "beta"),
            "meter": deployment.create_key("meter", "--workspace", "metered"),
            "limited": deployment.create_key("limited", "--rpm", "6"),
            "admin": deployment.create_key("ops", "--admin"),
        }
        yield deployment


@pytest.fixture(scope="module", params=KINDS)
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(request.param, tmp_path_factory.mktemp(f"platform-{request.param}")) as made:
        yield made


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[Server]:
    running = deployment.start()
    yield running
    stop_server(running)


def params(max_tokens: int = 8, model: str = "claude-haiku-4-5") -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "messages": HI}


def test_batch_round_trip_with_an_invalid_model_among_valid_requests(deployment: Deployment, server: Server) -> None:
    client = deployment.client(server, "alpha")
    requests = [{"custom_id": f"ok-{i}", "params": params()} for i in range(3)]
    requests.append({"custom_id": "bad-model", "params": params(model="claude-nonexistent-9")})
    created = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert created.id.startswith("msgbatch_") and created.processing_status == "in_progress"
    assert created.request_counts.processing == 4 and created.results_url is None
    assert created.expires_at - created.created_at == timedelta(hours=24)
    batch = wait_until_ended(client, created.id)
    assert batch.results_url == f"{server.base_url}/v1/messages/batches/{created.id}/results"
    counts = batch.request_counts
    assert (counts.succeeded, counts.errored, counts.processing, counts.canceled, counts.expired) == (3, 1, 0, 0, 0)
    results = {line.custom_id: line.result for line in client.messages.batches.results(created.id)}
    assert sorted(results) == ["bad-model", "ok-0", "ok-1", "ok-2"]
    for custom_id in ("ok-0", "ok-1", "ok-2"):
        result = results[custom_id]
        assert result.type == "succeeded"
        assert result.message.usage.service_tier == "batch" and 1 <= result.message.usage.output_tokens <= 8
        assert result.message.model == "claude-haiku-4-5"
    bad = results["bad-model"]
    assert bad.type == "errored" and bad.error.error.type == "not_found_error"
    assert created.id in [b.id for b in client.messages.batches.list(limit=100)]
    assert client.messages.batches.delete(created.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(created.id)


def test_batches_and_caches_are_isolated_by_workspace(deployment: Deployment, server: Server) -> None:
    alpha, alpha2, beta = (deployment.client(server, k, max_retries=0) for k in ("alpha", "alpha2", "beta"))
    created = alpha.messages.batches.create(requests=[{"custom_id": "mine", "params": params()}])  # type: ignore[list-item]
    with pytest.raises(anthropic.NotFoundError):
        beta.messages.batches.retrieve(created.id)
    assert created.id not in [b.id for b in beta.messages.batches.list()]
    assert alpha2.messages.batches.retrieve(created.id).id == created.id  # same workspace, other key
    system = [{"type": "text", "text": DOCUMENT, "cache_control": {"type": "ephemeral"}}]
    ask = {"model": "claude-sonnet-4-6", "max_tokens": 1, "system": system, "messages": HI}
    written = alpha.messages.create(**ask).usage  # type: ignore[arg-type]
    other = beta.messages.create(**ask).usage  # type: ignore[arg-type]
    same = alpha2.messages.create(**ask).usage  # type: ignore[arg-type]
    assert written.cache_creation_input_tokens > 1024 and written.cache_read_input_tokens == 0
    assert other.cache_read_input_tokens == 0 and other.cache_creation_input_tokens == written.cache_creation_input_tokens
    assert same.cache_read_input_tokens == written.cache_creation_input_tokens
    wait_until_ended(alpha, created.id)


def test_cancel_ends_the_batch_with_unstarted_requests_canceled(deployment: Deployment, server: Server) -> None:
    client = deployment.client(server, "alpha")
    created = client.messages.batches.create(
        requests=[{"custom_id": f"r{i}", "params": params(max_tokens=64)} for i in range(30)]  # type: ignore[misc]
    )
    canceling = client.messages.batches.cancel(created.id)
    assert canceling.processing_status in {"canceling", "ended"} and canceling.cancel_initiated_at is not None
    batch = wait_until_ended(client, created.id)
    counts = batch.request_counts
    assert counts.canceled >= 20 and counts.succeeded + counts.canceled == 30
    types = [line.result.type for line in client.messages.batches.results(created.id)]
    assert len(types) == 30 and types.count("canceled") == counts.canceled


def test_a_batch_survives_sigkill_and_answers_each_request_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    """On a database of its own (no other server to finish the batch): kill the server while it
    holds requests, restart it, and every request is answered, and billed, exactly once."""
    count = 12
    with deploy(deployment.kind, tmp_path) as fresh:
        database = create_engine(fresh.database_url)
        try:
            batch_id, before = _kill_mid_batch(fresh, database, count)
            restarted = fresh.start()
            try:
                client = fresh.client(restarted, "alpha")
                batch = wait_until_ended(client, batch_id)
                lines = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
            finally:
                stop_server(restarted)
            with database.connect() as connection:
                billed = connection.execute(text("SELECT count(*) FROM usage WHERE service_tier = 'batch'")).scalar_one()
        finally:
            database.dispose()
    assert sorted(lines) == sorted(f"k{i}" for i in range(count))
    assert batch.request_counts.succeeded == count and all(r.type == "succeeded" for r in lines.values())
    assert {c: lines[c].message.id for c in before} == before  # what was done before the kill stands
    assert billed == count


def _kill_mid_batch(fresh: Deployment, database: Any, count: int) -> tuple[str, dict[str, str]]:
    """Start a server, give it a batch, SIGKILL it while some requests are done and others running;
    return the batch and the message ids of the requests done by then."""
    server = fresh.start()
    try:
        client = fresh.client(server, "alpha")
        requests = [{"custom_id": f"k{i}", "params": params(max_tokens=40)} for i in range(count)]
        created = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        states = text("SELECT state, count(*) FROM message_batch_requests WHERE batch_id = :b GROUP BY state")
        deadline = time.monotonic() + 120
        while True:
            with database.connect() as connection:
                counts = dict(connection.execute(states, {"b": created.id}).all())
            if counts.get("succeeded", 0) >= 2 and counts.get("running", 0) >= 1:
                break
            assert time.monotonic() < deadline, f"no moment with requests both done and running: {counts}"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    done = text("SELECT custom_id, result FROM message_batch_requests WHERE batch_id = :b AND state = 'succeeded'")
    with database.connect() as connection:
        before = {c: json.loads(r)["message"]["id"] for c, r in connection.execute(done, {"b": created.id})}
    assert len(before) < count
    return created.id, before


def test_unfinished_requests_expire(deployment: Deployment, tmp_path: Path) -> None:
    """Expiry through a real server: batches expire 1 s after creation here, and requests run one
    at a time; the one running then finishes, the ones not started expire."""
    settings = ("SIJO_BATCHES", json.dumps({"expires_after": 1, "concurrency": 1}))
    story = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
    with deploy(deployment.kind, tmp_path) as fresh:
        server = fresh.start(settings)
        try:
            client = fresh.client(server, "alpha")
            requests = [
                {"custom_id": f"e{i}", "params": {**params(max_tokens=300), "messages": story}} for i in range(6)
            ]
            created = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
            batch = wait_until_ended(client, created.id, timeout=120)
            types = [line.result.type for line in client.messages.batches.results(created.id)]
        finally:
            stop_server(server)
    counts = batch.request_counts
    assert counts.expired >= 2 and counts.succeeded >= 1 and counts.succeeded + counts.expired == 6
    assert sorted(types) == sorted(["expired"] * counts.expired + ["succeeded"] * counts.succeeded)
    assert batch.ended_at is not None and batch.ended_at >= created.expires_at


def test_a_revoked_key_gets_401_on_its_next_request(deployment: Deployment, server: Server) -> None:
    secret = deployment.create_key("short-lived")
    client = anthropic.Anthropic(base_url=server.base_url, api_key=secret, max_retries=0)
    assert client.messages.create(**params(max_tokens=1)).type == "message"  # type: ignore[arg-type]
    listed = deployment.sijo("keys", "list")
    assert "short-lived" in listed and secret not in listed
    deployment.sijo("keys", "revoke", "short-lived")
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        client.messages.create(**params(max_tokens=1))  # type: ignore[arg-type]
    keys = admin_get(server, deployment, "/v1/organizations/api_keys", [("status", "inactive")])["data"]
    [revoked] = [key for key in keys if key["name"] == "short-lived"]
    assert admin_get(server, deployment, f"/v1/organizations/api_keys/{revoked['id']}", []) == revoked
    headers = {**HEADERS, "x-api-key": deployment.keys["admin"]}
    url = f"{server.base_url}/v1/organizations/api_keys/{revoked['id']}"
    restored = httpx.post(url, json={"status": "active", "name": "restored"}, headers=headers).json()
    assert (restored["status"], restored["name"]) == ("active", "restored")
    assert client.messages.create(**params(max_tokens=1)).type == "message"  # type: ignore[arg-type]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=server.base_url, api_key="sk-made-up", max_retries=0).models.list()


def test_rate_limited_requests_get_429_that_the_sdk_retries(deployment: Deployment, server: Server) -> None:
    strict = deployment.client(server, "limited", max_retries=0)
    for _ in range(20):  # 6 requests per minute: one refills every 10 s
        try:
            response = strict.messages.with_raw_response.create(**params(max_tokens=1))  # type: ignore[arg-type]
        except anthropic.RateLimitError as error:
            refused = error
            break
        assert response.headers["anthropic-ratelimit-requests-limit"] == "6"
    else:
        raise AssertionError("6 requests per minute never refused a request")
    assert refused.response.status_code == 429 and refused.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert 1 <= int(refused.response.headers["retry-after"]) <= 10
    assert refused.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    statuses: list[int] = []
    recorder = anthropic.DefaultHttpxClient(event_hooks={"response": [lambda response: statuses.append(response.status_code)]})
    patient = deployment.client(server, "limited", max_retries=2, http_client=recorder)
    for _ in range(3):  # the bucket is empty: within a call or two, one is refused, waits and succeeds
        statuses.clear()
        assert patient.messages.create(**params(max_tokens=1)).type == "message"  # type: ignore[arg-type]
        if statuses == [429, 200]:
            break
    else:
        raise AssertionError(f"the SDK never retried a 429: {statuses}")


def admin_get(server: Server, deployment: Deployment, path: str, query: list[tuple[str, str]]) -> Any:
    headers = {**HEADERS, "x-api-key": deployment.keys["admin"]}
    response = httpx.get(f"{server.base_url}{path}", params=query, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_usage_and_cost_reports_match_the_requests_made(deployment: Deployment, server: Server) -> None:
    started = datetime.now(UTC).replace(second=0, microsecond=0)
    client = deployment.client(server, "meter")
    usages = [client.messages.create(**params(max_tokens=4, model="claude-sonnet-4-6")).usage for _ in range(2)]  # type: ignore[arg-type]
    created = client.messages.batches.create(requests=[{"custom_id": "b", "params": params(model="claude-sonnet-4-6")}])  # type: ignore[list-item]
    wait_until_ended(client, created.id)
    [line] = list(client.messages.batches.results(created.id))
    batch_usage = line.result.message.usage  # type: ignore[union-attr]
    ending = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    window = [("starting_at", started.isoformat()), ("ending_at", ending)]
    keys = admin_get(server, deployment, "/v1/organizations/api_keys", [("limit", "100")])["data"]
    [meter] = [key for key in keys if key["name"] == "meter"]
    report = admin_get(server, deployment, "/v1/organizations/usage_report/messages", [
        *window, ("bucket_width", "1m"), ("group_by[]", "service_tier"), ("group_by[]", "model"),
        ("group_by[]", "api_key_id"), ("api_key_ids[]", meter["id"]),
    ])
    rows = [row for bucket in report["data"] for row in bucket["results"]]
    assert {(row["api_key_id"], row["model"]) for row in rows} == {(meter["id"], "claude-sonnet-4-6")}
    by_tier = {tier: [row for row in rows if row["service_tier"] == tier] for tier in ("standard", "batch")}
    assert sum(row["uncached_input_tokens"] for row in by_tier["standard"]) == sum(u.input_tokens for u in usages)
    assert sum(row["output_tokens"] for row in by_tier["standard"]) == sum(u.output_tokens for u in usages)
    assert sum(row["uncached_input_tokens"] for row in by_tier["batch"]) == batch_usage.input_tokens
    assert sum(row["output_tokens"] for row in by_tier["batch"]) == batch_usage.output_tokens
    costs = admin_get(server, deployment, "/v1/organizations/cost_report", [
        *window, ("group_by[]", "workspace_id"), ("group_by[]", "description"),
    ])
    cents = sum(
        Decimal(row["amount"])
        for bucket in costs["data"]
        for row in bucket["results"]
        if row["workspace_id"] == meter["workspace_id"]
    )
    # Sonnet 4.6: $3 / $15 per million tokens, batches half price; amounts are in cents
    standard = sum(3 * u.input_tokens + 15 * u.output_tokens for u in usages)
    batch = Decimal(3 * batch_usage.input_tokens + 15 * batch_usage.output_tokens) / 2
    assert cents == (standard + batch) * Decimal(100) / Decimal(1_000_000)
    summary = deployment.sijo("usage", "--days", "1")
    [sonnet] = [line.split() for line in summary.splitlines() if line.startswith("claude-sonnet-4-6 ")]
    assert int(sonnet[1]) >= 3 and sonnet[-1].startswith(("$", "<$"))  # requests, ..., cost


def test_two_processes_share_rate_limits_through_redis(deployment: Deployment) -> None:
    secret = deployment.create_key("shared", "--rpm", "3")
    redis = ("SIJO_REDIS_URL", "redis://127.0.0.1:6379/0")
    servers: list[Server] = []
    try:
        servers += [deployment.start(redis), deployment.start(redis)]
        clients = [anthropic.Anthropic(base_url=s.base_url, api_key=secret, max_retries=0) for s in servers]
        for i in range(3):
            clients[i % 2].messages.create(**params(max_tokens=1))  # type: ignore[arg-type]
        with pytest.raises(anthropic.RateLimitError):
            clients[1].messages.create(**params(max_tokens=1))  # type: ignore[arg-type]
    finally:
        for running in servers:
            stop_server(running)
