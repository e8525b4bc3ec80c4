"""/healthz, /readyz and /metrics of a real server on the embedded model, read as a load balancer and
Prometheus read them: the llama.cpp engine's own gauges are there, and a reply's tokens and timings."""

from __future__ import annotations

import anthropic
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server


def test_a_real_server_is_healthy_ready_and_measured(server: Server, sdk: anthropic.Anthropic) -> None:
    assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.base_url}/readyz").json() == {"status": "ok"}
    message = sdk.messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
    )
    families = {
        f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.base_url}/metrics").text)
    }
    for gauge in ("sijo_engine_slots", "sijo_engine_kv_size", "sijo_engine_waiting"):
        (sample,) = families[gauge].samples
        assert sample.labels == {"engine": "default"} and sample.value >= 0
    assert families["sijo_engine_slots"].samples[0].value >= 1
    outputs = [
        s.value
        for s in families["sijo_tokens"].samples
        if s.name == "sijo_tokens_total" and s.labels == {"model": "claude-haiku-4-5", "kind": "output"}
    ]
    assert outputs and outputs[0] >= message.usage.output_tokens
    ttft = [s for s in families["sijo_time_to_first_token_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels["model"] == "claude-haiku-4-5" and s.value >= 1 for s in ttft)
