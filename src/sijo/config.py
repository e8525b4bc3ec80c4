"""Settings: built once (CLI flags > environment `SIJO_*` > a TOML file > defaults) and injected.

Every field has a default and a description; `sijo serve --help` and the README point here.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Effort = Literal["low", "medium", "high", "xhigh", "max"]

# The guide's model ids: each serves the default engine unless configured otherwise.
# id, display name, aliases, the Claude model's own max_tokens limit (so the guide's values are accepted;
# a reply that outgrows the local window stops with `model_context_window_exceeded`).
CLAUDE_MODELS: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("claude-opus-4-7", "Claude Opus 4.7", (), 128_000),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", (), 64_000),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", ("claude-haiku-4-5",), 64_000),
)

# Thinking tokens per effort level under adaptive thinking, sized for small local models.
DEFAULT_THINKING_BUDGETS: dict[Effort, int] = {
    "low": 256,
    "medium": 512,
    "high": 1024,
    "xhigh": 2048,
    "max": 4096,
}
# Manual thinking budgets are cut to this many tokens unless a model says otherwise (`budget_tokens`
# is at least 1024 on the API, so this is the API's smallest budget: adaptive `high`).
DEFAULT_MAX_THINKING_TOKENS = 1024


EngineKind = Literal["llama_cpp", "completions", "anthropic"]
UpstreamDialect = Literal["vllm", "sglang", "llama-server"]


class EngineConfig(BaseModel):
    """One engine: llama.cpp in this process (`llama_cpp`), an engine server Sijo sends token ids to
    (`completions`: vLLM, SGLang, llama-server), or the Claude API or another Sijo (`anthropic`)."""

    model_config = ConfigDict(extra="forbid")

    kind: EngineKind = Field(
        default="llama_cpp",
        description="llama_cpp: a GGUF loaded here; completions: an upstream engine's OpenAI-style "
        "/v1/completions (token-id prompts); anthropic: a Messages API (the Claude API, another Sijo).",
    )
    url: str | list[str] | None = Field(
        default=None,
        description="completions: the upstream's base URL, or a list of replicas of one model (a "
        "request goes to the least loaded healthy one); anthropic: the API's base URL "
        "(default https://api.anthropic.com).",
    )
    dialect: UpstreamDialect = Field(
        default="vllm",
        description="completions: which server it is. vllm and sglang take Sijo's grammars as they "
        "are (llguidance); llama-server gets them translated to GBNF.",
    )
    upstream_model: str | None = Field(
        default=None,
        description="The model name sent upstream; unset means the upstream's first model "
        "(completions) or the id the client asked for (anthropic).",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the upstream's API key (anthropic: default "
        "ANTHROPIC_API_KEY); the key itself never goes in the config file.",
    )
    bos_token: str | None = Field(
        default=None, description="completions: the model's BOS text, if the upstream does not say it."
    )
    eos_token: str | None = Field(
        default=None, description="completions: the model's EOS text, if the upstream does not say it."
    )
    timeout: float = Field(default=600.0, gt=0, description="Upstreams: seconds one request may take.")
    connect_timeout: float = Field(default=5.0, gt=0, description="Upstreams: seconds to connect.")
    health_interval: float = Field(
        default=5.0, gt=0, description="Upstreams: seconds between health checks of each one."
    )
    path: Path | None = Field(
        default=None,
        description="GGUF file to load; unset means the embedded SmolLM2-135M-Instruct Q4_1.",
    )
    mmproj: Path | None = Field(
        default=None,
        description="A multimodal projector GGUF for the model (as llama-server's --mmproj): with it "
        "the model reads images and PDF pages as images; without it image blocks get a 400.",
    )
    chat_template: Path | None = Field(
        default=None,
        description=(
            "A Jinja chat template file used instead of the GGUF's own (as llama-server's "
            "--chat-template-file), e.g. to give a model its family's tool-calling template."
        ),
    )
    context_window: int | None = Field(
        default=None,
        ge=16,
        description="Longest sequence (prompt + output) in tokens; unset means the model's trained size.",
    )
    slots: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Requests decoded together in one batch (continuous batching); more wait in the queue.",
    )
    max_queue: int = Field(
        default=64,
        ge=0,
        description="Requests that may wait for a slot; beyond it a request gets 529 overloaded_error.",
    )
    kv_size: int | None = Field(
        default=None,
        ge=16,
        description=(
            "KV cache size in tokens, split evenly into one stream per slot (a request's context "
            "window is at most its stream); unset means slots times context_window, or, with "
            "neither set, up to 65536 tokens in all."
        ),
    )
    prefill_chunk: int = Field(
        default=256,
        ge=16,
        description="Prompt tokens prefilled per step; bounds how long a new prompt delays other streams.",
    )
    host_cache_mb: int = Field(
        default=1024,
        ge=0,
        description="Host RAM for kept prompt prefixes (copied into a slot's stream on a hit).",
    )
    leftover_ttl: float = Field(
        default=300.0,
        ge=0,
        description="Seconds a finished request's cells stay for reuse by a follow-up (speed only).",
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for decoding; unset means every core."
    )
    batch_size: int = Field(default=512, ge=1, description="Prompt tokens decoded per llama.cpp batch.")
    flash_attention: bool = Field(
        default=False,
        description=(
            "llama.cpp's flash attention. Off by default: its CPU kernel takes a batch of fewer than "
            "64 tokens one query row at a time, so past a few hundred tokens of context it slows "
            "every decoding step and every short prompt after a cached prefix (bench/README.md); "
            "it is faster only at prefilling long prompts from scratch."
        ),
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> EngineConfig:
        if self.kind == "completions" and not self.urls:
            raise ValueError("an engine of kind completions needs url (the upstream's base URL)")
        if self.kind == "llama_cpp" and self.url is not None:
            raise ValueError("url is for upstream engines (kind completions or anthropic)")
        if self.kind == "anthropic" and len(self.urls) > 1:
            raise ValueError("an engine of kind anthropic has one url (a model may list several engines)")
        return self

    @property
    def urls(self) -> tuple[str, ...]:
        if self.url is None:
            return ()
        return (self.url,) if isinstance(self.url, str) else tuple(self.url)


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The model id clients send, e.g. claude-sonnet-4-6.")
    engine: str | list[str] = Field(
        default="default",
        description="Name of the engine (see `engines`) serving it, or an ordered list: the first "
        "healthy one serves a request, and the next takes it over if one fails before any output "
        '(e.g. ["claude", "default"]: the Claude API while it answers, the local model offline).',
    )
    aliases: list[str] = Field(default_factory=list, description="Other ids that resolve to this one.")
    display_name: str | None = Field(default=None, description="Shown by GET /v1/models.")
    created_at: str = Field(default="1970-01-01T00:00:00Z", description="RFC 3339 release date.")
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Largest max_tokens accepted; unset means the context window. A reply that "
        "outgrows the window stops with stop_reason model_context_window_exceeded.",
    )
    thinking_budgets: dict[Effort, int] = Field(
        default_factory=lambda: dict(DEFAULT_THINKING_BUDGETS),
        description="Adaptive thinking: the most thinking tokens at each output_config.effort level.",
    )
    max_thinking_tokens: int | None = Field(
        default=DEFAULT_MAX_THINKING_TOKENS,
        ge=1,
        description="Manual thinking ({type: enabled}): the most thinking tokens a request's "
        "budget_tokens may buy; a larger budget is cut to it (Claude Code asks for 31999, minutes of "
        "babble on a small model). usage.output_tokens_details.thinking_tokens counts what ran. "
        "Unset: no cap.",
    )
    cache_min_tokens: int = Field(
        default=1024,
        ge=1,
        description="Shortest prompt prefix that cache_control caches; shorter ones are silently not cached.",
    )
    force_tool_use: bool = Field(
        default=False,
        description="For models too small to decide when to call a tool (e.g. under Claude Code): "
        "with tool_choice auto (or unset), the reply to a fresh user turn must call a tool, as under "
        "any, and the reply to tool results must answer in text, as under none, so each agent turn is "
        "one round of calls and then an answer. Off: tool_choice as the API defines it.",
    )


class RateLimitConfig(BaseModel):
    """Per API key, per minute (token buckets refilled continuously), as the Claude API's tiers."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int = Field(default=4000, ge=1, description="Requests per minute (RPM).")
    input_tokens_per_minute: int = Field(
        default=2_000_000, ge=1, description="Input tokens per minute (ITPM), cache reads excluded."
    )
    output_tokens_per_minute: int = Field(
        default=400_000, ge=1, description="Output tokens per minute (OTPM)."
    )
    batch_queue_requests: int = Field(
        default=100_000,
        ge=1,
        description="Batch requests of one key waiting or running at once (the API's processing "
        "queue limit); a batch that would pass it is a 429. Creating a batch is one request of RPM.",
    )


class ModelPrice(BaseModel):
    """What a model costs on the Claude API, in US dollars per million tokens (cache and batch
    prices follow from these: writes 1.25x for 5 minutes and 2x for 1 hour, reads 0.1x, batches 0.5x)."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0, description="USD per million input tokens.")
    output: float = Field(ge=0, description="USD per million output tokens.")


# The guide's prices for the Claude ids Sijo serves under their names (per million tokens).
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-7": ModelPrice(input=5.0, output=25.0),
    "claude-sonnet-4-6": ModelPrice(input=3.0, output=15.0),
    "claude-haiku-4-5-20251001": ModelPrice(input=1.0, output=5.0),
    "claude-haiku-4-5": ModelPrice(input=1.0, output=5.0),
}


class BatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Batch requests generated at once; unset means the default engine's slots minus one, "
        "so an interactive request always finds a slot.",
    )
    expires_after: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Seconds after creation when a batch's unfinished requests expire.",
    )
    max_requests: int = Field(default=100_000, ge=1, description="Most requests in one batch.")
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1, description="Largest batch creation body.")


class MediaConfig(BaseModel):
    """Images and documents given by URL: what Sijo may fetch, and how much."""

    model_config = ConfigDict(extra="forbid")

    fetch_allow: list[str] = Field(
        default_factory=list,
        description="Hosts or networks (names, IP addresses, CIDRs such as 10.0.0.0/8) that URL "
        "sources may reach even though they are loopback, private, link-local or metadata addresses.",
    )
    fetch_deny: list[str] = Field(
        default_factory=list,
        description="Hosts or networks (names, IP addresses, CIDRs) that URL sources may never reach.",
    )
    fetch_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a URL source may take to fetch, redirects included."
    )
    fetch_max_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1, description="Largest body a URL source may have."
    )
    fetch_max_redirects: int = Field(default=5, ge=0, description="Redirects a URL fetch follows.")


class FilesConfig(BaseModel):
    """The Files API (reference §13)."""

    model_config = ConfigDict(extra="forbid")

    max_file_bytes: int = Field(
        default=500 * 1024 * 1024, ge=1, description="Largest file one upload may carry (the API's 500 MB)."
    )
    workspace_quota_bytes: int = Field(
        default=100 * 1024**3,
        ge=1,
        description="Total bytes of files one workspace may hold (the API's 100 GB per organization).",
    )


SearchBackendKind = Literal["local", "searxng", "brave", "tavily"]


class SearchConfig(BaseModel):
    """The `web_search` server tool's backend: Sijo's own full-text index (`sijo search add`) or a
    search service."""

    model_config = ConfigDict(extra="forbid")

    backend: SearchBackendKind = Field(
        default="local",
        description="local: the SQLite FTS5 index of documents added with `sijo search add`; searxng, "
        "brave or tavily: that service (set `url` and, for brave and tavily, `api_key`).",
    )
    url: str | None = Field(
        default=None,
        description="The service's base URL (SearXNG: your instance, e.g. http://127.0.0.1:8888; "
        "Brave and Tavily default to their public APIs).",
    )
    api_key: str | None = Field(default=None, description="The Brave or Tavily API key.")
    timeout: float = Field(default=10.0, gt=0, description="Seconds one search may take.")
    max_results: int = Field(default=5, ge=1, le=50, description="Results one search returns.")
    index_path: Path | None = Field(
        default=None, description="The local index's SQLite file (default: <data_dir>/search.db)."
    )


class SandboxConfig(BaseModel):
    """The `code_execution` server tool's sandbox (bubblewrap) and its containers."""

    model_config = ConfigDict(extra="forbid")

    bwrap: str = Field(default="bwrap", description="The bubblewrap executable (name on PATH or a path).")
    wall_seconds: float = Field(default=30.0, gt=0, description="Wall-clock seconds one execution may run.")
    cpu_seconds: int = Field(default=30, ge=1, description="CPU seconds one execution may use.")
    memory_mb: int = Field(default=1024, ge=16, description="Address space one execution may map, in MiB.")
    max_processes: int = Field(default=64, ge=1, description="Processes (and threads) one execution may run.")
    max_output_bytes: int = Field(
        default=100_000, ge=1, description="Bytes of stdout (and of stderr) kept from one execution."
    )
    max_file_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1, description="Largest file code may write in its container."
    )
    workspace_mb: int = Field(
        default=1024,
        ge=1,
        description="Size of a container's files, in MiB (held in memory while code runs: a tmpfs).",
    )
    tmp_mb: int = Field(default=256, ge=1, description="Size of the sandbox's /tmp, in MiB (a tmpfs).")
    container_ttl: float = Field(
        default=30 * 24 * 3600.0,
        gt=0,
        description="Seconds a container lives after it was last used (the API's 30 days).",
    )


class ServerToolsConfig(BaseModel):
    """The server tools Sijo runs itself: web_search, web_fetch, code_execution (reference §12)."""

    model_config = ConfigDict(extra="forbid")

    max_iterations: int = Field(
        default=10,
        ge=1,
        description="Server tool calls one reply may run before it stops with `pause_turn`.",
    )
    search: SearchConfig = Field(default_factory=SearchConfig, description="web_search's backend.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="code_execution's sandbox.")
    fetch_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest page or PDF web_fetch downloads."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIJO_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="Address to bind; loopback unless keys are set.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys (SIJO_API_KEYS, comma-separated). None: loopback only, no auth.",
    )
    engines: dict[str, EngineConfig] = Field(
        default_factory=lambda: {"default": EngineConfig()},
        description="Named engines; `default` serves every model that names no other.",
    )
    models: list[ModelConfig] | None = Field(
        default=None,
        description="Served model ids; unset means the local model's own id plus the guide's Claude ids.",
    )
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1,
        description="Largest request body accepted (the API's 32 MB).",
    )
    data_dir: Path = Field(
        default_factory=lambda: (
            Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "sijo"
        ),
        description="Where Sijo keeps state: the SQLite database and the thinking-signature secret "
        "(SIJO_DATA_DIR).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database (keys, batches, usage); unset means SQLite at "
        "data_dir/sijo.db. PostgreSQL (postgresql+psycopg://...) lets several processes share it.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL for rate limits and prompt-cache entries shared by several processes "
        "(redis://127.0.0.1:6379/0), so a fleet bills as one server; unset means in-process.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL clients reach this server at, used in batch results_url; unset means "
        "the URL of the request that asked.",
    )
    admin_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Admin API keys (SIJO_ADMIN_KEYS, comma-separated), besides those made by "
        "`sijo keys create --admin`.",
    )
    rate_limits: RateLimitConfig = Field(
        default_factory=RateLimitConfig, description="Default limits of every key (per key in `sijo keys`)."
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="Claude API prices per model id, for the cost report (merged over the guide's "
        "prices); ids without one are left out of it.",
    )
    batches: BatchConfig = Field(default_factory=BatchConfig, description="Message Batches.")
    media: MediaConfig = Field(default_factory=MediaConfig, description="URL image and document sources.")
    files: FilesConfig = Field(default_factory=FilesConfig, description="The Files API.")
    server_tools: ServerToolsConfig = Field(
        default_factory=ServerToolsConfig, description="web_search, web_fetch and code_execution."
    )
    ping_interval: float = Field(
        default=10.0, gt=0, description="Seconds of stream silence before a `ping` event is sent."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the server answers to besides the loopback names, the bound address "
        "and public_url's host (SIJO_ALLOWED_HOSTS, comma-separated): exact names, `*.example.com` "
        "for its subdomains, or `*` for any. Guards against DNS rebinding (see api/hosts.py); with "
        "API keys any Host is accepted unless this is set.",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client may take to send a request's headers (from connecting, or from "
        "the previous response on a kept-alive connection), or the rest of a body its answer did not "
        "need; then the connection is closed.",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request body may pause between two chunks; then the request gets a "
        "408 timeout_error and the connection is closed.",
    )

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'sijo.db'}"

    @field_validator("prices", mode="after")
    @classmethod
    def _over_default_prices(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        """Configured prices add to (or replace) the guide's, model by model."""
        return {**DEFAULT_PRICES, **value}

    @field_validator("api_keys", "admin_keys", "allowed_hosts", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value


def load_settings(
    config_file: Path | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    model_path: Path | None = None,
    mmproj: Path | None = None,
    threads: int | None = None,
) -> Settings:
    """Defaults < the TOML file < the environment (`SIJO_*`) < the arguments (CLI flags)."""
    data: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as handle:
            data = tomllib.load(handle)
    from_env = Settings()
    data |= from_env.model_dump(include=from_env.model_fields_set)
    data |= {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**data)
    if model_path is not None or mmproj is not None or threads is not None:
        default = settings.engines.get("default", EngineConfig())
        changes = {"path": model_path, "mmproj": mmproj, "threads": threads}
        default = default.model_copy(update={k: v for k, v in changes.items() if v is not None})
        settings.engines["default"] = default
    return settings
