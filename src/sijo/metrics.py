"""What `GET /metrics` reports, in Prometheus's text format (the standard client library), one
registry per app (no global state):

    sijo_http_requests_total{method, route, status}      every request, by route template
    sijo_tokens_total{model, kind}                       input, output, cache_read, cache_write, thinking
    sijo_server_tool_requests_total{model, tool}         web searches and fetches billed
    sijo_time_to_first_token_seconds{model}              a reply's first content event (histogram)
    sijo_decode_seconds_per_token{model}                 a reply's generation time per output token
    sijo_engine_<stat>{engine}                           each engine's own gauges at scrape time:
                                                         running, waiting, slots, KV cells, …
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sijo.usage import UsageRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

# Each engine's stats at scrape time: engine name → {stat: value}.
EngineStats = Callable[[], Mapping[str, Mapping[str, int | float]]]


class Metrics:
    def __init__(self, engine_stats: EngineStats) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sijo_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "sijo_tokens", "Tokens billed, by kind.", ["model", "kind"], registry=self.registry
        )
        self.tool_requests = Counter(
            "sijo_server_tool_requests",
            "Server tool requests billed (web searches, web fetches).",
            ["model", "tool"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "sijo_time_to_first_token_seconds",
            "Seconds from a reply's start to its first content event.",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.per_token = Histogram(
            "sijo_decode_seconds_per_token",
            "A reply's seconds from its first to its last content event, per output token after the first.",
            ["model"],
            buckets=_PER_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine_stats))

    def record_usage(self, record: UsageRecord) -> None:
        """A reply's billed usage (what the usage ledger records too)."""
        counts = {
            "input": record.uncached_input_tokens,
            "output": record.output_tokens,
            "cache_read": record.cache_read_tokens,
            "cache_write": record.cache_write_5m_tokens + record.cache_write_1h_tokens,
            "thinking": record.thinking_tokens,
        }
        for kind, count in counts.items():
            if count:
                self.tokens.labels(record.model, kind).inc(count)
        if record.web_search_requests:
            self.tool_requests.labels(record.model, "web_search").inc(record.web_search_requests)

    def record_timing(
        self, model: str, first: float, last: float, started: float, output_tokens: int
    ) -> None:
        """A reply's timing: `started`, its first and last content events (monotonic seconds)."""
        self.ttft.labels(model).observe(max(0.0, first - started))
        if output_tokens > 1:
            self.per_token.labels(model).observe(max(0.0, last - first) / (output_tokens - 1))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector(Collector):
    def __init__(self, engine_stats: EngineStats) -> None:
        self._engine_stats = engine_stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for engine, stats in self._engine_stats().items():
            for stat, value in stats.items():
                name = "sijo_engine_" + "".join(ch if ch.isalnum() else "_" for ch in stat)
                family = families.get(name)
                if family is None:
                    family = GaugeMetricFamily(
                        name, f"The engine's {stat} (GET /sijo/status).", labels=["engine"]
                    )
                    families[name] = family
                family.add_metric([engine], float(value))
        yield from families.values()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # the stats are known only when scraped
