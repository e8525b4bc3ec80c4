"""A request made ready to run: everything `MessagesService.prepare` checked and rendered, and whom
its usage is recorded against."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sijo.catalog import RemoteModel, ServedModel
from sijo.engines.base import Admission, Sampling
from sijo.prompt.attachments import Attachments
from sijo.prompt.template import Prompt
from sijo.prompt_cache import Breakpoint
from sijo.protocol.context_management import ContextManagementResponse
from sijo.protocol.message import Usage
from sijo.protocol.params import MessageCreateParams, MessageParam
from sijo.reply_plan import ReplyPlan
from sijo.tools.toolset import ServerToolSet
from sijo.usage import UsageRecord

_PLAIN = ReplyPlan()
_NO_TOOLS = ServerToolSet()


@dataclass(frozen=True, slots=True)
class Account:
    """Whom a request's usage is recorded against (None: no key, or the default workspace)."""

    api_key_id: str | None = None
    workspace_id: str | None = None

    def record(
        self, model: str, batch: bool, usage: Usage, output_tokens: int, thinking_tokens: int
    ) -> UsageRecord:
        """The ledger's record of a reply for `model` whose prompt billed `usage`."""
        return UsageRecord(
            at=datetime.now(UTC),
            api_key_id=self.api_key_id,
            workspace_id=self.workspace_id,
            model=model,
            service_tier="batch" if batch else "standard",
            uncached_input_tokens=usage.input_tokens,
            output_tokens=output_tokens,
            cache_write_5m_tokens=usage.cache_creation.ephemeral_5m_input_tokens,
            cache_write_1h_tokens=usage.cache_creation.ephemeral_1h_input_tokens,
            cache_read_tokens=usage.cache_read_input_tokens,
            thinking_tokens=thinking_tokens,
            web_search_requests=0
            if usage.server_tool_use is None
            else usage.server_tool_use.web_search_requests,
        )


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    model_id: str
    served: ServedModel
    prompt: Prompt
    max_tokens: int
    sampling: Sampling
    stop_sequences: tuple[str, ...]
    inference_geo: str
    workspace: str
    breakpoints: tuple[Breakpoint, ...]
    plan: ReplyPlan = _PLAIN
    account: Account = Account()
    batch: bool = False  # a Message Batches request: background priority, service_tier "batch"
    admission: Admission | None = None  # set while it streams: the engine's promise of a place
    context_management: ContextManagementResponse | None = None  # the edits applied, if any were asked
    # What a reply that runs server tools renders again after each result (`_continue`).
    params: MessageCreateParams | None = None
    messages: tuple[MessageParam, ...] = ()  # the request's messages after its context edits
    attachments: Attachments | None = None
    toolset: ServerToolSet = _NO_TOOLS
    container_id: str | None = None
    uploads: tuple[tuple[str, bytes], ...] = ()
    forwarded: tuple[tuple[str, str], ...] = ()  # kept for a fallback route that is a Messages API

    @property
    def input_tokens(self) -> int:
        """The prompt's tokens, as rate limits count them before it runs."""
        return len(self.prompt.tokens)


@dataclass(frozen=True, slots=True)
class RemoteMessage:
    """A request for a model a Messages API upstream serves: sent up as the client wrote it."""

    model_id: str
    route: RemoteModel
    params: MessageCreateParams
    workspace: str
    account: Account = Account()
    batch: bool = False
    forwarded: tuple[tuple[str, str], ...] = ()  # the client's headers the upstream must see

    @property
    def input_tokens(self) -> int:
        """An estimate for rate limits (the prompt is tokenized upstream): a token per 4 bytes of
        its messages, system and tools, and a flat `MEDIA_TOKENS` for each image or document sent
        inline (its bytes are not its tokens); the ledger records what the upstream billed."""
        parts = self.params.model_dump(mode="json", include={"messages", "system", "tools"})
        media = _inline_media(parts)
        return (len(json.dumps(parts)) - sum(media)) // 4 + MEDIA_TOKENS * len(media)


MEDIA_TOKENS = 1600  # about what the API bills an image at its largest size, or a PDF page


def _inline_media(node: Any) -> list[int]:
    """The length of each base64 payload in `node` (a request as JSON)."""
    if isinstance(node, list):
        return [n for item in node for n in _inline_media(item)]
    if not isinstance(node, dict):
        return []
    if node.get("type") == "base64" and isinstance(node.get("data"), str):
        return [len(node["data"])]
    return [n for value in node.values() for n in _inline_media(value)]


Prepared = PreparedMessage | RemoteMessage
