"""A request's server tools: which it asked for, with their settings, and the functions the model
sees for them (reference §12).

The model calls a server tool the way it calls a client tool (the same markup and grammars); what
tells them apart is the name. `web_search` and `web_fetch` are one function each. Code execution
(`code_execution_20250825` and later) is two, as on the API: `bash_code_execution` and
`text_editor_code_execution`; the legacy `code_execution_20250522` is one, `code_execution`, which
runs Python. `tool_choice: {"type": "tool", "name": "code_execution"}` forces either of its functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sijo.errors import InvalidRequestError
from sijo.protocol.params import CountTokensParams, MessageCreateParams
from sijo.protocol.tools import CodeExecutionTool, CustomTool, InputSchema, WebFetchTool, WebSearchTool
from sijo.tools.web_search.domains import check_domains

_STRING = {"type": "string"}

_WEB_SEARCH = CustomTool(
    name="web_search",
    description="Search the web for current information. Returns the best matching pages, each with "
    "its title, URL and text.",
    input_schema=InputSchema(type="object", properties={"query": _STRING}, required=["query"]),
)
_WEB_FETCH = CustomTool(
    name="web_fetch",
    description="Fetch the full text of a web page or PDF. Only URLs that appear in the conversation "
    "can be fetched.",
    input_schema=InputSchema(type="object", properties={"url": _STRING}, required=["url"]),
)
_BASH = CustomTool(
    name="bash_code_execution",
    description="Run a bash command in a sandboxed Linux container with Python 3 (no internet "
    "access). Files persist in the working directory between calls.",
    input_schema=InputSchema(type="object", properties={"command": _STRING}, required=["command"]),
)
_EDITOR = CustomTool(
    name="text_editor_code_execution",
    description="View, create or edit a text file in the code execution container. command is one of "
    "view (path), create (path, file_text) or str_replace (path, old_str, new_str).",
    input_schema=InputSchema(
        type="object",
        properties={
            "command": {"type": "string", "enum": ["view", "create", "str_replace"]},
            "path": _STRING,
            "file_text": _STRING,
            "old_str": _STRING,
            "new_str": _STRING,
        },
        required=["command", "path"],
    ),
)
_PYTHON = CustomTool(
    name="code_execution",
    description="Run Python 3 code in a sandboxed container (no internet access) and see its output.",
    input_schema=InputSchema(type="object", properties={"code": _STRING}, required=["code"]),
)
LEGACY_CODE_EXECUTION = "code_execution_20250522"


@dataclass(frozen=True, slots=True)
class ServerToolSet:
    web_search: WebSearchTool | None = None
    web_fetch: WebFetchTool | None = None
    code_execution: CodeExecutionTool | None = None

    def __bool__(self) -> bool:
        return any((self.web_search, self.web_fetch, self.code_execution))

    def functions(self) -> list[CustomTool]:
        """What the model may call for these tools, in the order they are listed to it."""
        functions: list[CustomTool] = []
        if self.web_search is not None:
            functions.append(_WEB_SEARCH)
        if self.web_fetch is not None:
            functions.append(_WEB_FETCH)
        if self.code_execution is not None:
            legacy = self.code_execution.type == LEGACY_CODE_EXECUTION
            functions += [_PYTHON] if legacy else [_BASH, _EDITOR]
        return functions

    def names(self) -> frozenset[str]:
        return frozenset(function.name for function in self.functions())

    def groups(self) -> dict[str, tuple[str, ...]]:
        """`tool_choice` names → the functions they force (only code execution has two)."""
        if self.code_execution is None or self.code_execution.type == LEGACY_CODE_EXECUTION:
            return {}
        return {"code_execution": (_BASH.name, _EDITOR.name)}


def server_toolset(params: MessageCreateParams | CountTokensParams) -> ServerToolSet:
    """The request's server tools, checked: each at most once, domain filters well formed."""
    found: dict[str, Any] = {}
    for i, tool in enumerate(params.tools or []):
        if not isinstance(tool, WebSearchTool | WebFetchTool | CodeExecutionTool):
            continue
        if tool.name in found:
            raise InvalidRequestError(f"tools.{i}.name: Tool names must be unique: '{tool.name}'")
        if isinstance(tool, WebSearchTool | WebFetchTool):
            check_domains(tool.allowed_domains, tool.blocked_domains, f"tools.{i}")
        found[tool.name] = tool
    return ServerToolSet(found.get("web_search"), found.get("web_fetch"), found.get("code_execution"))
