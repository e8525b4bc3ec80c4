"""Parsing a reply as it streams: text and `<tool_call>` markup → text and tool_use events.

Text that might be the start of a call's markup is held back until it is known either way (as stop
sequences are), so no markup reaches a text block. A call's name is read up to its arguments; the
arguments then stream as `input_json_delta` fragments while they are generated. Thinking is
generated in a phase of its own (see `service.py`); `thinking_text` strips its markup.

A call cut short (a budget too small for it, as `max_tokens: 1` with `tool_choice: any`) leaves no
markup behind either. The API answers such a budget with what fitted and `stop_reason: max_tokens`,
never raw tags: a `tool_use` block once the call is named, incomplete (its input is the partial JSON,
which clients parse leniently, as `accumulate.py` does; the API's stop-reasons guide has clients retry
such a block with a higher `max_tokens`). So, at the end of generation:
- the start of the open tag, or of the name (`<tool_`, `<tool_call>\n{"name": "get_w`) → nothing;
- a whole name (`…{"name": "get_weather"`) → a `tool_use` block with input `{}`;
- arguments (`…"arguments": {"location": "Se`) → the block, with the arguments so far;
- the closing markup after whole arguments (`}\n</tool`) → dropped.
Text before the call stays text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from sijo.ids import new_id
from sijo.output.assembler import MessageAssembler
from sijo.prompt import markup
from sijo.protocol.events import StreamEvent

_OPEN = markup.CALL_OPEN
_NAME_END = markup.ARGUMENTS_KEY
_CALL_END = "}" + markup.CALL_CLOSE
_NAME_START = '{"name": "'

State = Literal["text", "name", "arguments", "between"]


@dataclass(frozen=True, slots=True)
class ServerCall:
    """A whole call of a server tool, for Sijo to run."""

    id: str
    name: str
    input: dict[str, Any]


class ReplyParser:
    """`calls` false: everything is text (no tools, or `tool_choice: none`). A call of one of
    `server_tools` opens a `server_tool_use` block; once it is whole, the parser stops reading
    (`server_call`): the reply goes on after Sijo has run it."""

    def __init__(
        self, assembler: MessageAssembler, *, calls: bool, server_tools: frozenset[str] = frozenset()
    ) -> None:
        self._assembler = assembler
        self._calls = calls
        self._server_tools = server_tools
        self._call: tuple[str, str] | None = None  # the open call's id and name
        self.server_call: ServerCall | None = None
        self._state: State = "text"
        self._buffer = ""
        self._text_started = False
        self._pending = ""  # whitespace before any text: dropped if a call comes first
        self._arguments: list[str] = []  # the arguments of the current call so far, in pieces
        self.tool_calls = 0

    def feed(self, text: str) -> list[StreamEvent]:
        if not self._calls:
            return self._text(text)
        if self.server_call is not None:
            return []
        self._buffer += text
        events: list[StreamEvent] = []
        while self.server_call is None:
            step = self._advance()
            if step is None:
                return events
            events += step
        return events

    def flush(self, *, ended: bool = False) -> list[StreamEvent]:
        """The end of generation: whatever is held back is emitted as what it was, and a call cut
        short (see the module docstring) leaves no markup. `ended`: the model ended its turn itself,
        so text held back as a possible start of a call (a reply ending in `<`) was text after all."""
        rest, self._buffer = self._buffer, ""
        if self.server_call is not None:
            return []
        if self._state == "text":
            cut_call = bool(rest.strip()) and not ended  # `rest` is whitespace, then the tag's start
            return [] if cut_call else self._text(rest)
        if self._state == "name":
            name = _whole_name(rest)
            if name is None:
                return self._assembler.close()
            return self._tool_use(name) + self._assembler.close()
        if self._state == "arguments":
            if rest and _is_json("".join(self._arguments)):  # `rest` is the call's closing markup
                rest = ""
            return self._tool_input(rest) + self._assembler.close()
        return self._assembler.close()

    def _advance(self) -> list[StreamEvent] | None:
        buffer = self._buffer
        if self._state == "text":
            found = buffer.find(_OPEN)
            if found < 0:  # hold back a possible start of a call, and whitespace that may precede one
                safe = buffer[: len(buffer) - partial_suffix(buffer, _OPEN)].rstrip()
                self._buffer = buffer[len(safe) :]
                events = self._text(safe)
                return events or None
            self._buffer = buffer[found + len(_OPEN) :]
            self._state = "name"
            events = self._text(buffer[:found].rstrip())
            self._pending = ""
            return events
        if self._state == "name":
            end = buffer.find(_NAME_END)
            if end < 0:
                return None
            self._buffer = buffer[end + len(_NAME_END) :]
            return self._tool_use(buffer[:end].removeprefix(_NAME_START))
        if self._state == "arguments":
            end = buffer.find(_CALL_END)
            if end < 0:
                keep = partial_suffix(buffer, _CALL_END)
                self._buffer = buffer[len(buffer) - keep :]
                return self._tool_input(buffer[: len(buffer) - keep]) or None
            self._buffer = buffer[end + len(_CALL_END) :]
            self._state = "between"
            events = self._tool_input(buffer[:end]) + self._assembler.close()
            self._end_call()
            return events
        # between calls: the grammar allows only another call (or the end); `flush` drops the rest
        start = buffer.find(_OPEN)
        if start < 0:
            self._buffer = buffer[len(buffer) - partial_suffix(buffer, _OPEN) :]
            return None
        self._buffer = buffer[start + len(_OPEN) :]
        self._state = "name"
        return []

    def _tool_use(self, name: str) -> list[StreamEvent]:
        self._state = "arguments"
        self._arguments = []
        server = name in self._server_tools
        call_id = new_id("srvtoolu" if server else "toolu")
        self._call = (call_id, name)
        if not server:
            self.tool_calls += 1
        return self._assembler.tool_use(call_id, name, server=server)

    def _end_call(self) -> None:
        """A call is whole: a server tool's is to be run (its arguments are JSON: the grammar saw to it)."""
        if self._call is None or self._call[1] not in self._server_tools:
            return
        try:
            arguments = json.loads("".join(self._arguments))
        except ValueError:
            arguments = {}
        call_id, name = self._call
        self.server_call = ServerCall(call_id, name, arguments if isinstance(arguments, dict) else {})

    def _tool_input(self, fragment: str) -> list[StreamEvent]:
        self._arguments.append(fragment)
        return self._assembler.tool_input(fragment)

    def _text(self, text: str) -> list[StreamEvent]:
        """Leading whitespace waits for real text, so a reply that is only a call has no text block."""
        if not self._text_started:
            self._pending += text
            if not self._pending.strip():
                return []
            text, self._pending, self._text_started = self._pending.lstrip(), "", True
        return self._assembler.text(text)


class ThinkingStream:
    """The thinking phase's text, minus the `</think>` that ends it (held back while it may be one)."""

    _END = "\n" + markup.THINK_END

    def __init__(self) -> None:
        self._held = ""
        self._pieces: list[str] = []  # all of the thinking so far (`text`)

    @property
    def text(self) -> str:
        """All of the thinking so far."""
        text = "".join(self._pieces)
        self._pieces = [text]
        return text

    def feed(self, text: str) -> str:
        buffer = self._held + text
        end = buffer.find(markup.THINK_END)
        if end >= 0:
            buffer = buffer[:end].removesuffix("\n")
            self._held = ""
        else:
            keep = max(partial_suffix(buffer, self._END), partial_suffix(buffer, markup.THINK_END))
            self._held = buffer[len(buffer) - keep :]
            buffer = buffer[: len(buffer) - keep]
        self._pieces.append(buffer)
        return buffer

    def flush(self) -> str:
        """At the end of the phase: held-back text that turned out not to be the end tag."""
        rest, self._held = self._held, ""
        rest = "" if self._END.startswith(rest) or markup.THINK_END.startswith(rest) else rest
        self._pieces.append(rest)
        return rest


def _whole_name(head: str) -> str | None:
    """The name in the head of a call cut short, if it was written whole: names hold no quotes
    (`^[a-zA-Z0-9_-]{1,64}$`), so the quote after one ends it."""
    if not head.startswith(_NAME_START):
        return None
    name, quote, _ = head[len(_NAME_START) :].partition('"')
    return name if quote and name else None


def _is_json(text: str) -> bool:
    """Whether `text` is whole JSON. The arguments are written compactly, so once they are, a held-back
    `}` (or `}\n</tool`) is the call's end; before, a `}` is theirs."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def partial_suffix(buffer: str, marker: str) -> int:
    """The length of the longest suffix of `buffer` that is a proper prefix of `marker`."""
    for size in range(min(len(marker) - 1, len(buffer)), 0, -1):
        if buffer.endswith(marker[:size]):
            return size
    return 0
