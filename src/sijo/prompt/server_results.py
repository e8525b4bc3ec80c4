"""Server tool results as the model reads them: each `*_tool_result` block → the text of a tool response.

The same text is used while the reply that ran the tool goes on (`service.py` renders the reply so
far as a conversation) and on later turns when a client sends the blocks back, so the model sees a
result the same way both times. A web search result's page text travels in its `encrypted_content`,
signed by this server (`signing.seal`): a client can pass it back, not forge or alter it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sijo.errors import InvalidRequestError
from sijo.media.pdf import read_pdf
from sijo.prompt.documents import Passage, web_search_passages
from sijo.protocol.content import (
    BashCodeExecutionToolResultBlockParam,
    CodeExecutionToolResultBlockParam,
    ServerToolResultBlockParam,
    TextEditorCodeExecutionToolResultBlockParam,
    WebFetchToolResultBlockParam,
    WebSearchToolResultBlockParam,
)
from sijo.protocol.server_tools import (
    BashCodeExecutionResultBlock,
    BashCodeExecutionToolResultError,
    CodeExecutionResultBlock,
    CodeExecutionToolResultError,
    TextEditorCreateResult,
    TextEditorResult,
    TextEditorStrReplaceResult,
    TextEditorToolResultError,
    TextEditorViewResult,
    WebFetchResultBlock,
    WebFetchToolResultError,
    WebSearchResultBlock,
    WebSearchToolResultError,
)
from sijo.signing import SEARCH_RESULT, open_sealed

# Opens a signed blob made by this server: its text, or ValueError.
Opener = Callable[[str], str]

_SEARCH = TypeAdapter(list[WebSearchResultBlock] | WebSearchToolResultError)
_FETCH = TypeAdapter(WebFetchResultBlock | WebFetchToolResultError)
_BASH = TypeAdapter(BashCodeExecutionResultBlock | BashCodeExecutionToolResultError)
_EDITOR: TypeAdapter[Any] = TypeAdapter(TextEditorResult)
_PYTHON = TypeAdapter(CodeExecutionResultBlock | CodeExecutionToolResultError)


def result_text(
    block: ServerToolResultBlockParam,
    field: str,
    open_sealed_text: Opener,
    passages: list[Passage] | None = None,
) -> tuple[str, bool]:
    """The text of a result for the model, and whether it is an error. With `passages`, a web
    search result's sentences are shown with references, and added there, for the reply to cite."""
    try:
        if isinstance(block, WebSearchToolResultBlockParam):
            content = _SEARCH.validate_python(block.content)
            return _search_text(content, field, open_sealed_text, passages)
        if isinstance(block, WebFetchToolResultBlockParam):
            return _fetch_text(_FETCH.validate_python(block.content), field)
        if isinstance(block, BashCodeExecutionToolResultBlockParam | CodeExecutionToolResultBlockParam):
            adapter = _BASH if isinstance(block, BashCodeExecutionToolResultBlockParam) else _PYTHON
            return _execution_text(adapter.validate_python(block.content))
        if isinstance(block, TextEditorCodeExecutionToolResultBlockParam):
            return _editor_text(_EDITOR.validate_python(block.content))
    except ValidationError as exc:
        detail = exc.errors()[0]
        where = ".".join(str(part) for part in detail["loc"])
        raise InvalidRequestError(f"{field}.content.{where}: {detail['msg']}") from None
    raise AssertionError(f"not a server tool result: {block.type}")


def search_result_text(title: str, url: str, page_age: str | None, text: str, number: int) -> str:
    age = f"\nPublished: {page_age}" if page_age else ""
    return f"[{number}] {title}\nURL: {url}{age}\n{text}"


def _search_text(
    content: list[WebSearchResultBlock] | WebSearchToolResultError,
    field: str,
    open_sealed_text: Opener,
    passages: list[Passage] | None,
) -> tuple[str, bool]:
    if isinstance(content, WebSearchToolResultError):
        return f"The web search failed: {content.error_code}", True
    if not content:
        return "The web search found nothing.", False
    texts = []
    for i, result in enumerate(content):
        try:
            page = open_sealed(open_sealed_text, SEARCH_RESULT, result.encrypted_content)
        except ValueError:
            raise InvalidRequestError(
                f"{field}.content.{i}.encrypted_content: Invalid `encrypted_content`"
            ) from None
        text = str(page.get("text", ""))
        if passages is not None:
            shown = [p.document_index for p in passages if p.kind == "web_search_result_location"]
            text = web_search_passages(text, max(shown, default=-1) + 2, result.title, result.url, passages)
        texts.append(search_result_text(result.title, result.url, result.page_age, text, i + 1))
    return "\n\n".join(texts), False


def _fetch_text(content: WebFetchResultBlock | WebFetchToolResultError, field: str) -> tuple[str, bool]:
    if isinstance(content, WebFetchToolResultError):
        return f"The fetch failed: {content.error_code}", True
    document = content.content
    title = f"Title: {document.title}\n" if document.title else ""
    source = document.source
    if source.type == "text":
        body = source.data
    else:
        try:
            data = base64.b64decode(source.data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(f"{field}.content.content.source.data: invalid base64") from None
        pages = read_pdf(data, field=f"{field}.content.content", render=False)
        body = "\n\n".join(page.text for page in pages)
    return f"{title}URL: {content.url}\n\n{body}", False


def _execution_text(
    content: BashCodeExecutionResultBlock
    | BashCodeExecutionToolResultError
    | CodeExecutionResultBlock
    | CodeExecutionToolResultError,
) -> tuple[str, bool]:
    if isinstance(content, BashCodeExecutionToolResultError | CodeExecutionToolResultError):
        return f"The execution failed: {content.error_code}", True
    parts = [f"return code: {content.return_code}"]
    if content.stdout:
        parts.append(f"stdout:\n{content.stdout}")
    if content.stderr:
        parts.append(f"stderr:\n{content.stderr}")
    if content.content:
        parts.append(f"files written: {len(content.content)}")
    return "\n".join(parts), content.return_code != 0


def _editor_text(content: Any) -> tuple[str, bool]:
    if isinstance(content, TextEditorToolResultError):
        return f"{content.error_code}: {content.error_message or ''}".rstrip(": "), True
    if isinstance(content, TextEditorViewResult):
        return content.content, False
    if isinstance(content, TextEditorCreateResult):
        return ("File updated." if content.is_file_update else "File created."), False
    assert isinstance(content, TextEditorStrReplaceResult)
    return "Replaced.\n" + "\n".join(content.lines or []), False
