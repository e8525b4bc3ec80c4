"""The guide's hybrid: a model id served by a Messages API upstream while it answers (here a second
Sijo process standing in for the Claude API) and by a local model when it does not (the embedded one,
or an upstream engine server: one config file holds all three); events passed through one by one,
errors mapped 1:1, usage in this Sijo's ledger and metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HEADERS, Server, start_configured, stop_server, wait_until_ended
from tests.upstreams import LlamaServer, start_llama_server

USER = [{"role": "user", "content": "Say hello."}]
ADMIN = "front-admin-key"


def front_config(upstream: str, engine_server: str) -> str:
    """One file: the embedded model, an upstream engine server and a Messages API upstream."""
    return f"""
api_keys = ["front-key"]
admin_keys = ["{ADMIN}"]

[engines.default]  # the embedded model

[engines.gpu]
kind = "completions"
url = "{engine_server}"
dialect = "llama-server"

[engines.claude]
kind = "anthropic"
url = "{upstream}"
api_key_env = "UPSTREAM_KEY"
health_interval = 60

[[models]]
id = "claude-sonnet-4-6"
engine = ["claude", "default"]

[[models]]
id = "claude-haiku-4-5-20251001"
engine = "claude"

[[models]]
id = "claude-opus-4-7"
engine = ["claude", "gpu"]

[[models]]
id = "claude-ghost"
engine = "claude"
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The stand-in for the Claude API: a Sijo that wants a key, as the API does."""
    server = start_configured(tmp_path_factory.mktemp("upstream"), 'api_keys = ["operator-key"]\n')
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def engine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = start_llama_server(tmp_path_factory.mktemp("llama-server"), parallel=1)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(
    upstream: Server, engine_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = front_config(upstream.base_url, engine_server.url)
    server = start_configured(tmp_path_factory.mktemp("front"), config, {"UPSTREAM_KEY": "operator-key"})
    yield server
    stop_server(server)


@pytest.fixture
def client(front: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=front.base_url, api_key="front-key", max_retries=0)


def served_upstream(upstream: Server) -> float:
    """POST /v1/messages answered by the upstream so far (its own Prometheus counter)."""
    text = httpx.get(f"{upstream.base_url}/metrics", headers={"x-api-key": "operator-key"}, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sijo_http_requests_total" and sample.labels.get("route") == "/v1/messages"
    )


def test_a_routed_model_is_answered_by_the_upstream_and_billed_here(
    client: anthropic.Anthropic, upstream: Server, front: Server
) -> None:
    started = datetime.now(UTC)
    before = served_upstream(upstream)
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=6, messages=USER)  # type: ignore[arg-type]
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=6, messages=USER) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert served_upstream(upstream) == before + 2
    assert message.model == "claude-sonnet-4-6" and message.content and message.usage.output_tokens >= 1
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
    counted = client.messages.count_tokens(model="claude-sonnet-4-6", messages=USER)  # type: ignore[arg-type]
    assert counted.input_tokens == message.usage.input_tokens == streamed.usage.input_tokens
    window = [
        ("starting_at", (started - timedelta(minutes=1)).isoformat()),
        ("ending_at", (datetime.now(UTC) + timedelta(minutes=2)).isoformat()),
        ("bucket_width", "1m"),
        ("group_by[]", "model"),
    ]
    deadline = time.monotonic() + 30
    while True:
        report = httpx.get(
            f"{front.base_url}/v1/organizations/usage_report/messages",
            params=window,
            headers={**HEADERS, "x-api-key": ADMIN},
            timeout=10,
        ).json()
        rows = [row for bucket in report["data"] for row in bucket["results"]]
        output = sum(row["output_tokens"] for row in rows if row["model"] == "claude-sonnet-4-6")
        if output or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert output == message.usage.output_tokens + streamed.usage.output_tokens


def test_upstream_errors_come_back_as_the_same_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as error:
        client.messages.create(model="claude-ghost", max_tokens=4, messages=USER)  # type: ignore[arg-type]
    assert error.value.status_code == 404 and "claude-ghost" in str(error.value)


def test_a_batch_for_a_routed_model_runs_through_the_batch_worker(
    client: anthropic.Anthropic, upstream: Server
) -> None:
    before = served_upstream(upstream)
    params: dict[str, Any] = {"model": "claude-haiku-4-5-20251001", "max_tokens": 4, "messages": USER}
    batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": params}])  # type: ignore[list-item]
    wait_until_ended(client, batch.id)
    [line] = list(client.messages.batches.results(batch.id))
    assert line.result.type == "succeeded"
    assert served_upstream(upstream) == before + 1


def test_offline_the_local_model_takes_over_and_upstream_only_models_are_529(
    client: anthropic.Anthropic, upstream: Server, front: Server
) -> None:
    stop_server(upstream)
    counted = client.messages.count_tokens(model="claude-sonnet-4-6", messages=USER)  # type: ignore[arg-type]
    assert counted.input_tokens > 0  # counted by the local model: the upstream did not answer
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=4, messages=USER)  # type: ignore[arg-type]
    assert message.content and message.usage.output_tokens >= 1  # the local model answered
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=4, messages=USER) as stream:  # type: ignore[arg-type]
        assert [event.type for event in stream][-1] == "message_stop"
    opus = client.messages.create(model="claude-opus-4-7", max_tokens=4, messages=USER)  # type: ignore[arg-type]
    assert opus.content and opus.usage.output_tokens >= 1  # the upstream engine server answered
    with pytest.raises(anthropic.APIStatusError) as error:
        client.messages.create(model="claude-haiku-4-5-20251001", max_tokens=4, messages=USER)  # type: ignore[arg-type]
    assert error.value.status_code == 529
    metrics = httpx.get(f"{front.base_url}/metrics", headers={"x-api-key": "front-key"}, timeout=10).text
    health = {
        sample.labels["engine"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "sijo_engine_upstreams_healthy"
    }
    assert health == {"claude": 0.0, "gpu": 1.0}
