"""Context editing (the `context_management` beta): old thinking and old tool results cleared from a
conversation before it is rendered, as the API does on its side (reference §1.1).

The client keeps its whole history and sends it every time; every request is edited afresh, and
what the client holds never changes. The edits run in the order given, on the wire messages, before
they become a `Conversation`:

- `clear_thinking_20251015` drops the thinking blocks of all but the last `keep` assistant turns that
  have any (default 1; `"all"` keeps every one). An assistant turn that was only thinking goes.
- `clear_tool_uses_20250919`, once the prompt exceeds its `trigger` (default 100,000 input tokens, or
  a number of tool uses), replaces the results of all but the `keep` most recent tool uses (default
  3) with `CLEARED_TOOL_RESULT`, and their inputs with `{}` where `clear_tool_inputs` says so. Uses of
  the tools in `exclude_tools` stay. If that would free fewer than `clear_at_least` tokens, nothing is
  cleared.

What an edit frees is measured, not estimated: `apply_edits` renders and tokenises the prompt with
the served model before and after each edit that clears something, and reads the input-token
trigger from the same count. `applied_edits` lists the edits that cleared something.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sijo.errors import InvalidRequestError
from sijo.protocol.content import (
    ContentBlockParam,
    RedactedThinkingBlockParam,
    ThinkingBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from sijo.protocol.context_management import (
    AllThinkingTurns,
    AppliedEdit,
    ClearThinkingApplied,
    ClearThinkingEdit,
    ClearToolUsesApplied,
    ClearToolUsesEdit,
    CompactEdit,
    ContextManagementConfig,
    ToolUsesTrigger,
)
from sijo.protocol.params import MessageParam

# What a cleared tool result says instead. The API's own wording is not published; this one tells
# the model what happened and what to do about it.
CLEARED_TOOL_RESULT = "[Tool result cleared to save context. Call the tool again if you need it.]"
DEFAULT_TRIGGER_TOKENS = 100_000
DEFAULT_KEEP_TOOL_USES = 3
DEFAULT_KEEP_THINKING_TURNS = 1

Edit = ClearThinkingEdit | ClearToolUsesEdit
R = TypeVar("R")


def checked_edits(config: ContextManagementConfig, *, thinking: bool) -> list[Edit]:
    """The edits to run, with the API's rules checked; `thinking`: the request enables thinking
    (`enabled` or `adaptive`)."""
    edits: list[Edit] = []
    for i, edit in enumerate(config.edits):
        if isinstance(edit, CompactEdit):
            raise InvalidRequestError(
                f"context_management.edits.{i}.type: the `compact_20260112` strategy (server-side "
                "compaction) is not supported by Sijo yet; use `clear_tool_uses_20250919` to keep a "
                "long conversation within the context window"
            )
        if isinstance(edit, ClearThinkingEdit):
            if i != 0:
                raise InvalidRequestError(
                    "context_management: `clear_thinking_20251015` must be the first strategy in "
                    "`context_management.edits` when provided"
                )
            if not thinking:
                raise InvalidRequestError(
                    "`clear_thinking_20251015` strategy requires `thinking` to be enabled or adaptive"
                )
        edits.append(edit)
    return edits


@dataclass(frozen=True, slots=True)
class Clearing:
    """An edit's outcome: the messages after it, and how many thinking turns or tool uses it cleared."""

    messages: list[MessageParam]
    cleared: int


def clear_thinking(messages: list[MessageParam], edit: ClearThinkingEdit) -> Clearing:
    keep = _thinking_turns_kept(edit)
    turns = [i for i, message in enumerate(messages) if _has_thinking(message)]
    if keep is None or len(turns) <= keep:
        return Clearing(messages, 0)
    old = set(turns[: len(turns) - keep])
    edited: list[MessageParam] = []
    for i, message in enumerate(messages):
        if i not in old:
            edited.append(message)
            continue
        assert not isinstance(message.content, str)  # it has thinking blocks
        rest = [block for block in message.content if not _is_thinking(block)]
        if rest:
            edited.append(message.model_copy(update={"content": rest}))
    return Clearing(edited, len(old))


def clear_tool_uses(messages: list[MessageParam], edit: ClearToolUsesEdit, input_tokens: int) -> Clearing:
    """`input_tokens`: the prompt's size as it stands (after the edits before this one)."""
    uses = _tool_uses(messages)
    if not _triggered(edit, input_tokens, len(uses)):
        return Clearing(messages, 0)
    keep = edit.keep.value if edit.keep is not None else DEFAULT_KEEP_TOOL_USES
    excluded = set(edit.exclude_tools or ())
    cleared = [use for use in uses[: max(len(uses) - keep, 0)] if use.name not in excluded]
    if not cleared:
        return Clearing(messages, 0)
    results = {(use.message + 1, use.id) for use in cleared}
    inputs = {(use.message, use.id) for use in cleared if _clears_input(edit, use.name)}
    edited = [_with_uses_cleared(i, message, results, inputs) for i, message in enumerate(messages)]
    return Clearing(edited, len(cleared))


@dataclass(frozen=True, slots=True)
class Edited(Generic[R]):
    rendered: R  # the prompt after the edits
    original_tokens: int  # the prompt's tokens before them
    applied: list[AppliedEdit]


async def apply_edits(
    messages: list[MessageParam],
    edits: Sequence[Edit],
    *,
    render: Callable[[list[MessageParam]], Awaitable[R]],
    size: Callable[[R], int],
) -> Edited[R]:
    """Run `edits` in order. `render` lays out and tokenises a conversation as generation would see
    it, `size` is its length in tokens; a conversation is rendered once more for each edit that
    clears something."""
    rendered = await render(messages)
    original = tokens = size(rendered)
    applied: list[AppliedEdit] = []
    for edit in edits:
        if isinstance(edit, ClearThinkingEdit):
            clearing = clear_thinking(messages, edit)
        else:
            clearing = clear_tool_uses(messages, edit, tokens)
        if not clearing.cleared:
            continue
        candidate = await render(clearing.messages)
        freed = max(tokens - size(candidate), 0)
        if isinstance(edit, ClearToolUsesEdit) and edit.clear_at_least is not None:
            if freed < edit.clear_at_least.value:
                continue  # not worth breaking the cached prefix for: nothing is cleared
        messages, rendered, tokens = clearing.messages, candidate, size(candidate)
        applied.append(_applied(edit, clearing.cleared, freed))
    return Edited(rendered, original, applied)


def _applied(edit: Edit, cleared: int, freed: int) -> AppliedEdit:
    if isinstance(edit, ClearThinkingEdit):
        return ClearThinkingApplied(cleared_thinking_turns=cleared, cleared_input_tokens=freed)
    return ClearToolUsesApplied(cleared_tool_uses=cleared, cleared_input_tokens=freed)


def _thinking_turns_kept(edit: ClearThinkingEdit) -> int | None:
    """How many of the last thinking turns keep their thinking; None: all of them."""
    keep = edit.keep
    if keep is None:
        return DEFAULT_KEEP_THINKING_TURNS
    if isinstance(keep, str) or isinstance(keep, AllThinkingTurns):
        return None
    return keep.value


def _is_thinking(block: ContentBlockParam) -> bool:
    return isinstance(block, ThinkingBlockParam | RedactedThinkingBlockParam)


def _has_thinking(message: MessageParam) -> bool:
    return (
        message.role == "assistant"
        and not isinstance(message.content, str)
        and any(_is_thinking(block) for block in message.content)
    )


@dataclass(frozen=True, slots=True)
class _ToolUse:
    message: int  # the assistant message's index; its result is in the next one
    id: str
    name: str


def _tool_uses(messages: list[MessageParam]) -> list[_ToolUse]:
    return [
        _ToolUse(i, block.id, block.name)
        for i, message in enumerate(messages)
        if message.role == "assistant" and not isinstance(message.content, str)
        for block in message.content
        if isinstance(block, ToolUseBlockParam)
    ]


def _triggered(edit: ClearToolUsesEdit, input_tokens: int, tool_uses: int) -> bool:
    """Whether the prompt exceeds the edit's trigger."""
    trigger = edit.trigger
    if isinstance(trigger, ToolUsesTrigger):
        return tool_uses > trigger.value
    threshold = trigger.value if trigger is not None else DEFAULT_TRIGGER_TOKENS
    return input_tokens > threshold


def _clears_input(edit: ClearToolUsesEdit, name: str) -> bool:
    which = edit.clear_tool_inputs
    if isinstance(which, list):
        return name in which
    return bool(which)


def _with_uses_cleared(
    index: int, message: MessageParam, results: set[tuple[int, str]], inputs: set[tuple[int, str]]
) -> MessageParam:
    """`message` with the results (in user messages) and inputs (in assistant ones) of the cleared
    tool uses replaced; each is known by its message's index and its tool use id."""
    if isinstance(message.content, str):
        return message
    content: list[ContentBlockParam] = []
    for block in message.content:
        if isinstance(block, ToolResultBlockParam) and (index, block.tool_use_id) in results:
            block = block.model_copy(update={"content": CLEARED_TOOL_RESULT})
        elif isinstance(block, ToolUseBlockParam) and (index, block.id) in inputs:
            block = block.model_copy(update={"input": {}})
        content.append(block)
    if content == message.content:
        return message
    return message.model_copy(update={"content": content})
