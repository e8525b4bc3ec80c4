"""`thinking` and `output_config` (reference §10, §11), one class per `type`.

The guide writes `thinking={"type": "adaptive", "effort": "xhigh", "task_budget": 50000}`; those two
keys are accepted on the adaptive config as aliases of `output_config.effort` / `task_budget`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from sijo.protocol.base import WireModel

Effort = Literal["low", "medium", "high", "xhigh", "max"]
Display = Literal["summarized", "omitted"]


class TaskBudget(WireModel):
    type: Literal["tokens"]
    total: int = Field(ge=1)
    remaining: int | None = Field(default=None, ge=0)


class ThinkingEnabled(WireModel):
    type: Literal["enabled"]
    budget_tokens: int
    display: Display | None = None


class ThinkingAdaptive(WireModel):
    type: Literal["adaptive"]
    display: Display | None = None
    effort: Effort | None = None  # the guide's spelling of output_config.effort
    task_budget: int | TaskBudget | None = None  # likewise, of output_config.task_budget


class ThinkingDisabled(WireModel):
    type: Literal["disabled"]


ThinkingConfig = Annotated[
    ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled, Field(discriminator="type")
]


class JsonSchemaFormat(WireModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(WireModel):
    effort: Effort | None = None
    format: JsonSchemaFormat | None = None
    task_budget: TaskBudget | None = None
