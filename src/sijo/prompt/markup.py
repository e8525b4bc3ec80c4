"""Sijo's generic reply markup: how tools, tool calls, tool results and thinking appear as text.

Models without a tool-calling template of their own see tools the way Hermes- and Qwen-style models
are trained to: a `<tools>` list of function signatures in the system prompt, calls written as
`<tool_call>{"name": …, "arguments": …}</tool_call>` and results returned in
`<tool_response>` tags; reasoning goes inside `<think>` tags before the answer. The same strings
are what the grammars in `output/grammar.py` force and what `output/reply.py` parses, so
generated and replayed turns look alike to the model.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

# Where an image goes in a block's text (`conversation.Part.images`). Random per process, so that no
# client text can stand for an image.
IMAGE = f"\x00sijo-image-{secrets.token_hex(8)}\x00"
THINK_OPEN = "<think>\n"
THINK_END = "</think>"  # ends the thinking the model writes
THINK_CLOSE = "\n</think>\n\n"  # how a finished thinking block is written back into the prompt
CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "\n</tool_call>"
CALL_SEPARATOR = "\n"
ARGUMENTS_KEY = '", "arguments": '  # between the name and the arguments of a call

TOOLS_HEADER = (
    "# Tools\n\n"
    "You may call one or more functions to help with the user's request. "
    "The functions you can call are listed inside <tools></tools> tags:\n<tools>"
)
TOOLS_FOOTER = (
    "</tools>\n\n"
    "To call a function, write a JSON object with the function's name and arguments inside "
    "<tool_call></tool_call> tags, one call per pair of tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <arguments-json-object>}\n</tool_call>\n'
    "The results come back inside <tool_response></tool_response> tags."
)
THINKING_INSTRUCTION = (
    "Before you answer, think the problem through step by step inside <think></think> tags; "
    "then write your answer after the closing </think> tag."
)

CITE_INSTRUCTION = (
    "The documents show each passage with its reference in brackets, like [1.2]. When a sentence of "
    'your answer rests on a passage, write that sentence as <cite ref="1.2">the sentence</cite>, '
    "with the passage's reference."
)


def tool_line(name: str, description: str | None, schema: dict[str, Any]) -> str:
    function = {"name": name, "description": description or "", "parameters": schema}
    return json.dumps({"type": "function", "function": function}, ensure_ascii=False)


def call_prefix(name: str) -> str:
    """A call up to its arguments: what is written before the arguments' JSON."""
    return CALL_OPEN + '{"name": "' + name + ARGUMENTS_KEY


def call_text(name: str, arguments: dict[str, Any]) -> str:
    return call_prefix(name) + json.dumps(arguments, ensure_ascii=False) + "}" + CALL_CLOSE


def tool_response_text(content: str, *, is_error: bool) -> str:
    body = f"Error: {content}" if is_error else content
    return f"<tool_response>\n{body}\n</tool_response>"


def thinking_text(thinking: str) -> str:
    return THINK_OPEN + thinking + THINK_CLOSE
