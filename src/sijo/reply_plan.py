"""What a reply may contain — thinking, text, tool calls, JSON — decided from the request, with the
API's rules for combining `tools`, `tool_choice`, `thinking`, `output_config` checked (reference
§1.4, §10, §11). The answer's grammar comes from here; `service.py` runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sijo.errors import InvalidRequestError
from sijo.json_schema import check_json_schema, check_schema
from sijo.output.citations import citations_grammar
from sijo.output.grammar import CallSpec, calls_grammar, json_grammar
from sijo.prompt.documents import Passage
from sijo.protocol.content import ServerToolResultBlockParam
from sijo.protocol.params import CountTokensParams, MessageCreateParams
from sijo.protocol.reasoning import Display, Effort, ThinkingAdaptive, ThinkingEnabled
from sijo.protocol.tools import (
    CustomTool,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    VersionedTool,
)

MAX_STRICT_TOOLS = 20
MIN_THINKING_BUDGET = 1024
DEFAULT_EFFORT: Effort = "high"
TRIVIAL_PROMPT_CHARS = 40  # adaptive thinking at low or medium effort skips prompts shorter than this


@dataclass(frozen=True, slots=True)
class ThinkingPlan:
    budget: int
    display: Display


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    calls: bool = False  # the reply may contain tool calls
    grammar: str | None = None  # the answer's grammar (after any thinking)
    thinking: ThinkingPlan | None = None
    relaxed_grammar: str | None = field(default=None, compare=False)  # non-strict schemas left open
    passages: tuple[Passage, ...] = ()  # what the answer may cite (its grammar allows only these)


def with_citations(
    plan: ReplyPlan, params: MessageCreateParams | CountTokensParams, passages: tuple[Passage, ...]
) -> ReplyPlan:
    """The plan for a request whose documents have citations on: a text answer may cite their
    passages. A reply that may call tools is left as it is (its grammar has no room for citations)."""
    if not passages:
        return plan
    config_format = params.output_config.format if params.output_config is not None else None
    if config_format is not None or params.output_format is not None:
        if all(p.kind == "web_search_result_location" for p in passages):
            return plan  # search results cite where they can; a structured answer cannot
        where = "output_config.format" if config_format is not None else "output_format"
        raise InvalidRequestError(f"{where}: Citations are not supported together with structured outputs")
    if plan.grammar is not None:
        return plan
    return replace(plan, grammar=citations_grammar([p.ref for p in passages]), passages=passages)


def plan_reply(
    params: MessageCreateParams | CountTokensParams,
    tools: list[CustomTool],
    *,
    budgets: Mapping[Effort, int],
    last_user_text: str,
    has_prefill: bool,
    force_tool_use: bool = False,
    groups: Mapping[str, tuple[str, ...]] | None = None,
) -> ReplyPlan:
    """`tools` are every function the model may call (the client's tools and the server tools'
    functions), rendered into the prompt before the plan is made. `force_tool_use` is the model's
    setting of that name (see `_one_round`); `groups` maps a `tool_choice` name to the functions it
    forces, where that is not the function of that name (code execution's two)."""
    answer_schema = _answer_schema(params, has_prefill)
    choice = params.tool_choice
    forced = isinstance(choice, ToolChoiceAny | ToolChoiceTool)
    if forced and not tools:
        raise InvalidRequestError("tool_choice: tool_choice may only be specified while providing tools")
    if forced and after_server_results(params):  # the forced call was made: the reply goes on freely
        choice = ToolChoiceAuto(
            type="auto", disable_parallel_tool_use=getattr(choice, "disable_parallel_tool_use", None)
        )
        forced = False
    thinking = _thinking(params, budgets, last_user_text, has_prefill)
    if thinking is not None and forced:
        raise InvalidRequestError(
            "tool_choice: Thinking may not be enabled when tool_choice forces tool use."
        )
    if force_tool_use and tools and not forced and not isinstance(choice, ToolChoiceNone):
        choice = _one_round(params, choice)
    calls = bool(tools) and not isinstance(choice, ToolChoiceNone)
    grammar = relaxed = None
    if calls:
        grammar, relaxed = _calls_grammars(tools, choice, answer_schema, groups or {})
    elif answer_schema is not None:
        grammar = json_grammar(answer_schema)
    return ReplyPlan(calls, grammar, thinking, relaxed)


def _one_round(
    params: MessageCreateParams | CountTokensParams, choice: ToolChoice | None
) -> ToolChoice | None:
    """`tool_choice` auto under a model's `force_tool_use`, for models too small to decide when to
    call: a fresh user turn must call a tool (as `any`), and the reply to tool results must answer
    in text (as `none`), so each turn of an agent loop is one round of calls, then an answer."""
    last = params.messages[-1] if params.messages else None
    if after_server_results(params):
        return ToolChoiceNone(type="none")
    if last is None or last.role != "user":
        return choice  # a prefill: continued as the request asks
    if not isinstance(last.content, str) and any(block.type == "tool_result" for block in last.content):
        return ToolChoiceNone(type="none")
    parallel_off = getattr(choice, "disable_parallel_tool_use", None)
    return ToolChoiceAny(type="any", disable_parallel_tool_use=parallel_off)


def after_server_results(params: MessageCreateParams | CountTokensParams) -> bool:
    """Whether the request continues a reply that ends in a server tool's result (a `pause_turn`
    sent back, or the reply in progress as `service.py` renders it after running a tool)."""
    last = params.messages[-1] if params.messages else None
    if last is None or last.role != "assistant" or isinstance(last.content, str) or not last.content:
        return False
    return isinstance(last.content[-1], ServerToolResultBlockParam)


def custom_tools(
    params: MessageCreateParams | CountTokensParams, server_functions: list[CustomTool] | None = None
) -> list[CustomTool]:
    """The request's client tools, checked: names unique (among them and the server tools'
    `server_functions`), other Anthropic-defined tools refused, every schema a JSON Schema, strict
    ones within the structured-outputs subset."""
    tools: list[CustomTool] = []
    for i, tool in enumerate(params.tools or []):
        if isinstance(tool, VersionedTool):
            raise InvalidRequestError(f"tools.{i}.type: '{tool.type}' tools are not supported by Sijo yet")
        if isinstance(tool, CustomTool):
            tools.append(tool)
    names = [t.name for t in [*tools, *(server_functions or [])]]
    if len(set(names)) != len(names):
        raise InvalidRequestError("tools: Tool names must be unique.")
    strict = [i for i, t in enumerate(tools) if t.strict]
    if len(strict) > MAX_STRICT_TOOLS:
        raise InvalidRequestError(
            f"tools: at most {MAX_STRICT_TOOLS} strict tools are allowed, got {len(strict)}"
        )
    for i, tool in enumerate(tools):
        check = check_schema if tool.strict else check_json_schema
        check(tool.schema_dict(), f"tools.{i}.input_schema")
    return tools


def _answer_schema(
    params: MessageCreateParams | CountTokensParams, has_prefill: bool
) -> dict[str, Any] | None:
    config_format = params.output_config.format if params.output_config is not None else None
    if config_format is not None and params.output_format is not None:
        raise InvalidRequestError(
            "output_format: use output_config.format; the deprecated output_format cannot be given as well"
        )
    fmt, where = (
        (config_format, "output_config.format") if config_format else (params.output_format, "output_format")
    )
    if fmt is None:
        return None
    if has_prefill:
        raise InvalidRequestError(
            f"{where}: structured outputs cannot be used with a prefilled assistant message"
        )
    check_schema(fmt.schema_, f"{where}.schema")
    return fmt.schema_


def _thinking(
    params: MessageCreateParams | CountTokensParams,
    budgets: Mapping[Effort, int],
    last_user_text: str,
    has_prefill: bool,
) -> ThinkingPlan | None:
    config = params.thinking
    if not isinstance(config, ThinkingEnabled | ThinkingAdaptive):
        return None
    max_tokens = params.max_tokens if isinstance(params, MessageCreateParams) else None
    if isinstance(config, ThinkingEnabled):
        if config.budget_tokens < MIN_THINKING_BUDGET:
            raise InvalidRequestError(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to "
                f"{MIN_THINKING_BUDGET}"
            )
        if max_tokens is not None and config.budget_tokens >= max_tokens:
            raise InvalidRequestError(
                "max_tokens: `max_tokens` must be greater than `thinking.budget_tokens`"
            )
        budget = config.budget_tokens
    else:
        effort = _effort(params, config)
        if effort in ("low", "medium") and len(last_user_text.strip()) < TRIVIAL_PROMPT_CHARS:
            return None  # adaptive: nothing here worth thinking about
        budget = budgets.get(effort, budgets.get(DEFAULT_EFFORT, 1024))
    if isinstance(params, MessageCreateParams):
        _check_sampling_with_thinking(params)
    if has_prefill:
        raise InvalidRequestError(
            "messages: a final assistant message (prefill) cannot be used when thinking is enabled"
        )
    return ThinkingPlan(budget=budget, display=config.display or "summarized")


def _effort(params: MessageCreateParams | CountTokensParams, config: ThinkingAdaptive) -> Effort:
    configured = params.output_config.effort if params.output_config is not None else None
    if configured is not None and config.effort is not None and configured != config.effort:
        raise InvalidRequestError(
            f"thinking.effort: '{config.effort}' contradicts output_config.effort '{configured}'"
        )
    return configured or config.effort or DEFAULT_EFFORT


def _check_sampling_with_thinking(params: MessageCreateParams) -> None:
    if params.temperature is not None and params.temperature != 1:
        raise InvalidRequestError(
            "temperature: `temperature` may only be set to 1 when thinking is enabled or in adaptive mode."
        )
    if params.top_k is not None:
        raise InvalidRequestError(
            "top_k: `top_k` cannot be set when thinking is enabled or in adaptive mode."
        )
    if params.top_p is not None and not 0.95 <= params.top_p <= 1:
        raise InvalidRequestError(
            "top_p: `top_p` must be between 0.95 and 1 when thinking is enabled or in adaptive mode."
        )


def _calls_grammars(
    tools: list[CustomTool],
    choice: Any,
    answer_schema: dict[str, Any] | None,
    groups: Mapping[str, tuple[str, ...]],
) -> tuple[str, str | None]:
    """The grammar with every tool's schema, and one with non-strict schemas opened up (a fallback
    for schemas the constraint library cannot compile; strict ones must compile)."""
    forced = isinstance(choice, ToolChoiceAny | ToolChoiceTool)
    parallel = not (choice is not None and getattr(choice, "disable_parallel_tool_use", False))
    chosen = tools
    if isinstance(choice, ToolChoiceTool):
        names = groups.get(choice.name, (choice.name,))
        chosen = [t for t in tools if t.name in names]
        if not chosen:
            raise InvalidRequestError(f"tool_choice.name: no tool named '{choice.name}' in tools")
    exact = [CallSpec(t.name, t.schema_dict()) for t in chosen]
    open_ = [CallSpec(t.name, t.schema_dict() if t.strict else {"type": "object"}) for t in chosen]
    grammar = calls_grammar(exact, forced=forced, parallel=parallel, answer_schema=answer_schema)
    relaxed = calls_grammar(open_, forced=forced, parallel=parallel, answer_schema=answer_schema)
    return grammar, (relaxed if relaxed != grammar else None)
