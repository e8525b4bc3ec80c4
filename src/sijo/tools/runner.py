"""Running server tool calls: a call the model made → the tool's result block (reference §12).

`ServerTools` holds what the tools run on (the search backend, the fetch policy, the sandbox and
its containers, the Files API) and is shared by every request; `ToolRun` is one reply's state: how
often each tool was used (`max_uses`), the requests to bill, the container it works in.

A tool that fails says so in its result block, with the API's `error_code`: the reply goes on
(HTTP 200). Nothing a tool does raises out of `run` but a bug.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import shlex
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sijo.errors import InvalidRequestError
from sijo.media.fetch import FetchPolicy
from sijo.media.pdf import read_pdf
from sijo.output.reply import ServerCall
from sijo.protocol.base import rfc3339
from sijo.protocol.message import ServerToolUsage
from sijo.protocol.server_tools import (
    Base64PdfDocumentSource,
    BashCodeExecutionOutputBlock,
    BashCodeExecutionResultBlock,
    BashCodeExecutionToolResultBlock,
    BashCodeExecutionToolResultError,
    CitationsConfig,
    CodeExecutionErrorCode,
    CodeExecutionOutputBlock,
    CodeExecutionResultBlock,
    CodeExecutionToolResultBlock,
    CodeExecutionToolResultError,
    DocumentBlock,
    PlainTextDocumentSource,
    ServerToolResultBlock,
    TextEditorCodeExecutionToolResultBlock,
    TextEditorResult,
    TextEditorToolResultError,
    WebFetchResultBlock,
    WebFetchToolResultBlock,
    WebFetchToolResultError,
    WebSearchResultBlock,
    WebSearchToolResultBlock,
    WebSearchToolResultError,
)
from sijo.protocol.server_tools import Container as ContainerInfo
from sijo.signing import SEARCH_RESULT, ThinkingSigner, seal
from sijo.tools.code_execution.containers import Container, Containers, OutputFile
from sijo.tools.code_execution.sandbox import Execution, Sandbox, SandboxUnavailableError
from sijo.tools.toolset import ServerToolSet
from sijo.tools.web_fetch import FetchedPage, WebFetchError, fetch_page
from sijo.tools.web_search.backends import (
    SearchBackend,
    SearchHit,
    SearchQuery,
    SearchRateLimitedError,
    SearchUnavailableError,
    UserLocation,
)
from sijo.tools.web_search.domains import url_allowed

logger = logging.getLogger("sijo.tools")

MAX_QUERY_CHARS = 500  # longer queries get `query_too_long`
CHARS_PER_TOKEN = 4  # web_fetch's `max_content_tokens`, in characters
SWEEP_SECONDS = 3600.0  # expired containers are removed at most this often

# Reads a Files API file of a workspace: (workspace, file id) → (filename, bytes), or None.
UploadReader = Callable[[str, str], Awaitable[tuple[str, bytes] | None]]
# Saves a file code wrote as a downloadable Files API file: (workspace, filename, bytes) → file id.
OutputSaver = Callable[[str, str, bytes], Awaitable[str]]

_EDITOR_RESULT: TypeAdapter[Any] = TypeAdapter(TextEditorResult)


@dataclass(slots=True)
class ToolRun:
    """One reply's use of its server tools."""

    workspace: str
    toolset: ServerToolSet
    # What web_fetch may fetch: the URLs of the user's messages and of search and fetch results so
    # far (never of what the model wrote: its text, its calls, what its code printed).
    context: list[str]
    container_id: str | None = None  # the request's `container`, to reuse
    uploads: tuple[tuple[str, bytes], ...] = ()  # `container_upload` files: (name, bytes)
    uses: dict[str, int] = field(default_factory=dict)
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    container: Container | None = None

    @property
    def usage(self) -> ServerToolUsage | None:
        if not self.toolset:
            return None
        return ServerToolUsage(
            web_search_requests=self.web_search_requests, web_fetch_requests=self.web_fetch_requests
        )

    @property
    def container_info(self) -> ContainerInfo | None:
        if self.container is None:
            return None
        return ContainerInfo(id=self.container.id, expires_at=rfc3339(self.container.expires_at))

    def over_limit(self, tool: str, max_uses: int | None) -> bool:
        """Count a use of `tool`; whether it is one more than `max_uses` allows."""
        self.uses[tool] = self.uses.get(tool, 0) + 1
        return max_uses is not None and self.uses[tool] > max_uses


class ServerTools:
    def __init__(
        self,
        *,
        search: SearchBackend,
        fetch_policy: FetchPolicy,
        sandbox: Sandbox,
        containers: Containers,
        sealer: ThinkingSigner,
        read_upload: UploadReader,
        save_output: OutputSaver,
        max_output_file_bytes: int,
        max_results: int = 5,
    ) -> None:
        self.search = search
        self.fetch_policy = fetch_policy
        self.sandbox = sandbox
        self.containers = containers
        self._sealer = sealer
        self._read_upload = read_upload
        self._save_output = save_output
        self._max_output_file_bytes = max_output_file_bytes
        self._max_results = max_results
        self._next_sweep = 0.0
        self._busy: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def reuse(self, workspace: str, container_id: str) -> Container:
        """The request's `container`: one of the workspace's that has not expired, or a 400."""
        container = self.containers.get(workspace, container_id)
        if container is None:
            raise InvalidRequestError(f"container: container '{container_id}' was not found or has expired")
        return container

    async def uploads(self, workspace: str, file_ids: list[str]) -> tuple[tuple[str, bytes], ...]:
        """The `container_upload` files, read now (a missing one is a 400 before the reply starts)."""
        found = []
        for file_id in file_ids:
            upload = await self._read_upload(workspace, file_id)
            if upload is None:
                raise InvalidRequestError(f"container_upload: file '{file_id}' was not found")
            name, data = upload
            name = Path(name.replace("\x00", "")).name
            found.append((name if name not in ("", ".", "..") else file_id, data))
        return tuple(found)

    async def run(self, call: ServerCall, run: ToolRun) -> ServerToolResultBlock:
        """The call's result block. A failure of Sijo's own (a disk full, a container gone) is the
        tool's `unavailable` result, logged: the reply goes on, as the API's does."""
        try:
            block = await self._run(call, run)
        except Exception:
            logger.exception("the %s server tool failed", call.name)
            block = _unavailable(call)
        if isinstance(block, WebSearchToolResultBlock | WebFetchToolResultBlock):
            run.context.append(block.model_dump_json())  # its URLs may be fetched next
        return block

    async def _run(self, call: ServerCall, run: ToolRun) -> ServerToolResultBlock:
        if call.name == "web_search":
            return WebSearchToolResultBlock(tool_use_id=call.id, content=await self._search(call, run))
        if call.name == "web_fetch":
            return WebFetchToolResultBlock(tool_use_id=call.id, content=await self._fetch(call, run))
        if call.name == "bash_code_execution":
            return BashCodeExecutionToolResultBlock(tool_use_id=call.id, content=await self._bash(call, run))
        if call.name == "text_editor_code_execution":
            return TextEditorCodeExecutionToolResultBlock(
                tool_use_id=call.id, content=await self._edit(call, run)
            )
        return CodeExecutionToolResultBlock(tool_use_id=call.id, content=await self._python(call, run))

    # web_search

    async def _search(
        self, call: ServerCall, run: ToolRun
    ) -> list[WebSearchResultBlock] | WebSearchToolResultError:
        tool = run.toolset.web_search
        assert tool is not None
        if run.over_limit("web_search", tool.max_uses):
            return WebSearchToolResultError(error_code="max_uses_exceeded")
        query = call.input.get("query")
        if not isinstance(query, str) or not query.strip():
            return WebSearchToolResultError(error_code="invalid_tool_input")
        if len(query) > MAX_QUERY_CHARS:
            return WebSearchToolResultError(error_code="query_too_long")
        location = tool.user_location
        request = SearchQuery(
            text=query,
            workspace=run.workspace,
            max_results=self._max_results,
            allowed_domains=tuple(tool.allowed_domains or ()),
            blocked_domains=tuple(tool.blocked_domains or ()),
            user_location=None
            if location is None
            else UserLocation(location.city, location.region, location.country, location.timezone),
        )
        try:
            hits = await self.search.search(request)
        except SearchRateLimitedError:
            return WebSearchToolResultError(error_code="too_many_requests")
        except SearchUnavailableError:
            return WebSearchToolResultError(error_code="unavailable")
        run.web_search_requests += 1
        hits = [h for h in hits if url_allowed(h.url, request.allowed_domains, request.blocked_domains)]
        return [self._search_result(hit) for hit in hits[: request.max_results]]

    def _search_result(self, hit: SearchHit) -> WebSearchResultBlock:
        sealed = seal(self._sealer, SEARCH_RESULT, {"url": hit.url, "title": hit.title, "text": hit.text})
        return WebSearchResultBlock(
            url=hit.url, title=hit.title, encrypted_content=sealed, page_age=hit.page_age
        )

    # web_fetch

    async def _fetch(self, call: ServerCall, run: ToolRun) -> WebFetchResultBlock | WebFetchToolResultError:
        tool = run.toolset.web_fetch
        assert tool is not None
        if run.over_limit("web_fetch", tool.max_uses):
            return WebFetchToolResultError(error_code="max_uses_exceeded")
        url = call.input.get("url")
        if not isinstance(url, str) or not url:
            return WebFetchToolResultError(error_code="invalid_tool_input")
        if url not in mentioned_urls(run.context):
            return WebFetchToolResultError(error_code="url_not_in_prior_context")
        allowed, blocked = tuple(tool.allowed_domains or ()), tuple(tool.blocked_domains or ())
        if not url_allowed(url, allowed, blocked):
            return WebFetchToolResultError(error_code="url_not_allowed")
        try:
            page = await fetch_page(url, self.fetch_policy)
        except WebFetchError as exc:
            return WebFetchToolResultError(error_code=exc.error_code)
        if page.final_url and not url_allowed(page.final_url, allowed, blocked):  # a redirect out
            return WebFetchToolResultError(error_code="url_not_allowed")
        if page.media_type == "application/pdf" and not await _readable_pdf(page.data or b""):
            return WebFetchToolResultError(error_code="unsupported_content_type")
        run.web_fetch_requests += 1
        cited = tool.citations is not None and bool(tool.citations.enabled)
        return WebFetchResultBlock(
            url=url,
            retrieved_at=rfc3339(page.retrieved_at),
            content=_document(page, tool.max_content_tokens, cited),
        )

    # code execution

    async def _container(self, run: ToolRun) -> Container:
        """The reply's container: the request's, or a new one; touched (its expiry moves on). The
        sandbox is checked first, so that no container is made where none can run."""
        await asyncio.to_thread(self.sandbox.check)
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_SECONDS
            await asyncio.to_thread(self.containers.sweep)
        if run.container is None:
            run.container = await asyncio.to_thread(self._open_container, run)
        run.container = await asyncio.to_thread(self.containers.touch, run.container)
        return run.container

    def _open_container(self, run: ToolRun) -> Container:
        """The request's container (checked when the request was prepared; one that expired since
        is replaced by a new one), or a new one, with the request's uploads placed in it."""
        container = None
        if run.container_id is not None:
            container = self.containers.get(run.workspace, run.container_id)
        if container is None:
            container = self.containers.create(run.workspace)
        for name, data in run.uploads:
            self.containers.place(container, name, data)
        return container

    async def _execute(
        self, run: ToolRun, command: str
    ) -> tuple[Execution, list[str]] | CodeExecutionErrorCode:
        """Run `command` in the reply's container: what it printed and the file ids of what it wrote."""
        try:
            container = await self._container(run)
            async with self._holding(container):  # what changed is this run's doing, no other's
                before = await asyncio.to_thread(self.containers.snapshot, container)
                execution = await self.sandbox.bash(container.path, command)
                changes = await asyncio.to_thread(
                    self.containers.changes, container, before, self._max_output_file_bytes
                )
        except SandboxUnavailableError:
            return "unavailable"
        if execution.timed_out:
            return "execution_time_exceeded"
        if changes.too_large:
            return "output_file_too_large"
        return execution, [await self._save(run, output) for output in changes.files]

    @contextlib.asynccontextmanager
    async def _holding(self, container: Container) -> AsyncIterator[None]:
        """One run at a time in a container (two replies may share one by its id)."""
        lock = self._busy.get(container.id)
        if lock is None:
            lock = self._busy[container.id] = asyncio.Lock()
        async with lock:
            yield

    async def _save(self, run: ToolRun, output: OutputFile) -> str:
        return await self._save_output(run.workspace, Path(output.name).name, output.data)

    async def _bash(
        self, call: ServerCall, run: ToolRun
    ) -> BashCodeExecutionResultBlock | BashCodeExecutionToolResultError:
        command = call.input.get("command")
        if not isinstance(command, str) or not command.strip():
            return BashCodeExecutionToolResultError(error_code="invalid_tool_input")
        outcome = await self._execute(run, command)
        if isinstance(outcome, str):
            return BashCodeExecutionToolResultError(error_code=outcome)
        execution, file_ids = outcome
        return BashCodeExecutionResultBlock(
            stdout=execution.stdout,
            stderr=execution.stderr,
            return_code=execution.return_code,
            content=[BashCodeExecutionOutputBlock(file_id=file_id) for file_id in file_ids],
        )

    async def _python(
        self, call: ServerCall, run: ToolRun
    ) -> CodeExecutionResultBlock | CodeExecutionToolResultError:
        code = call.input.get("code")
        if not isinstance(code, str) or not code.strip():
            return CodeExecutionToolResultError(error_code="invalid_tool_input")
        outcome = await self._execute(run, "python3 -c " + shlex.quote(code))
        if isinstance(outcome, str):
            return CodeExecutionToolResultError(error_code=outcome)
        execution, file_ids = outcome
        return CodeExecutionResultBlock(
            stdout=execution.stdout,
            stderr=execution.stderr,
            return_code=execution.return_code,
            content=[CodeExecutionOutputBlock(file_id=file_id) for file_id in file_ids],
        )

    async def _edit(self, call: ServerCall, run: ToolRun) -> Any:
        try:
            container = await self._container(run)
            async with self._holding(container):
                result = await self.sandbox.edit(container.path, dict(call.input))
        except SandboxUnavailableError as exc:
            return TextEditorToolResultError(error_code="unavailable", error_message=str(exc))
        try:
            return _EDITOR_RESULT.validate_python(result)
        except ValidationError:
            return TextEditorToolResultError(error_code="unavailable", error_message="the editor failed")


# A URL as it appears in text or JSON: up to a space, quote, angle bracket or backslash (a JSON escape).
_URL = re.compile(r"https?://[^\s\"'<>\\]+")
_TRAILING = ".,;:!?)]}"  # punctuation after a URL in a sentence ("see https://x.org/a.")


def mentioned_urls(texts: list[str]) -> set[str]:
    """Every whole URL in `texts`, each also without the punctuation a sentence may put after it."""
    found: set[str] = set()
    for text in texts:
        for match in _URL.finditer(text):
            found.add(match.group())
            found.add(match.group().rstrip(_TRAILING))
    return found


async def _readable_pdf(data: bytes) -> bool:
    """Whether the model can read the PDF as a document (it is read again each time the reply is
    rendered: a broken one would fail every later turn that sends the block back)."""
    try:
        await asyncio.to_thread(read_pdf, data, field="web_fetch", render=False)
    except InvalidRequestError:
        return False
    return True


def _unavailable(call: ServerCall) -> ServerToolResultBlock:
    if call.name == "web_search":
        return WebSearchToolResultBlock(
            tool_use_id=call.id, content=WebSearchToolResultError(error_code="unavailable")
        )
    if call.name == "web_fetch":
        return WebFetchToolResultBlock(
            tool_use_id=call.id, content=WebFetchToolResultError(error_code="unavailable")
        )
    if call.name == "bash_code_execution":
        error = BashCodeExecutionToolResultError(error_code="unavailable")
        return BashCodeExecutionToolResultBlock(tool_use_id=call.id, content=error)
    if call.name == "text_editor_code_execution":
        failed = TextEditorToolResultError(error_code="unavailable", error_message="the editor failed")
        return TextEditorCodeExecutionToolResultBlock(tool_use_id=call.id, content=failed)
    return CodeExecutionToolResultBlock(
        tool_use_id=call.id, content=CodeExecutionToolResultError(error_code="unavailable")
    )


def _document(page: FetchedPage, max_content_tokens: int | None, cited: bool) -> DocumentBlock:
    citations = CitationsConfig(enabled=True) if cited else None
    if page.media_type == "application/pdf":
        data = base64.b64encode(page.data or b"").decode("ascii")
        return DocumentBlock(source=Base64PdfDocumentSource(data=data), title=page.title, citations=citations)
    text = page.text or ""
    if max_content_tokens is not None:
        text = text[: max_content_tokens * CHARS_PER_TOKEN]
    return DocumentBlock(source=PlainTextDocumentSource(data=text), title=page.title, citations=citations)
