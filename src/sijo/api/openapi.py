"""GET /openapi.json: Sijo's routes, with the schemas of their request bodies and answers.

The routes read their bodies by hand (api/body.py: the size limit, strict validation, 400s naming the
field), so FastAPI cannot see them. Each route declares its body with
`openapi_extra=request_body(Model)` and its answers with `responses=answers(Model)`; `install` serves
the document FastAPI builds from these, with the body schemas' definitions moved into
`components/schemas`, where the answers' already are.

The document is served without a key, as the Claude API's own OpenAPI description is public: it is
the same for every caller and holds no data. The Host check and the browser rules still apply to it.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, JsonValue

from sijo.errors import ApiError

REF = "#/components/schemas/{model}"


def _error_types(cls: type[ApiError] = ApiError) -> set[str]:
    """The `error.type` of every class in the error tree."""
    found = {cls.error_type}
    for sub in cls.__subclasses__():
        found |= _error_types(sub)
    return found


class ErrorDetail(BaseModel):
    type: str = Field(json_schema_extra={"enum": list[JsonValue](sorted(_error_types()))})
    message: str


class ErrorResponse(BaseModel):
    """Every failure, as `ApiError.body` writes it (errors.py)."""

    type: Literal["error"]
    error: ErrorDetail
    request_id: str | None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """A route's `openapi_extra`: its JSON body is a `model`."""
    schema = model.model_json_schema(ref_template=REF)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def answers(
    model: type[BaseModel] | None,
    *,
    media_type: str | None = None,
    description: str = "",
    error: type[BaseModel] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """A route's `responses`: 200 with a `model` (JSON) or a `media_type` (a stream), and the errors
    (`error`: their body, the API's `ErrorResponse` unless a route answers in another shape)."""
    success: dict[str, Any] = {"description": description or "Success"}
    if model is not None:
        success["model"] = model
    if media_type is not None:
        success["content"] = {media_type: {"schema": {"type": "string"}}}
    failure = {"model": error or ErrorResponse}
    return {
        200: success,
        "4XX": {**failure, "description": "The request was refused (see error.type)."},
        "5XX": {**failure, "description": "Sijo failed, or is overloaded (529); x-should-retry says."},
    }


def install(app: FastAPI) -> None:
    """Serve the document, built on its first request."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = hoisted(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def hoisted(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with each request body's schema moved into components (by its model's title) and
    replaced by a reference to it; two different schemas under one name are an error. FastAPI's 422
    answers go: Sijo answers a bad parameter with 400 invalid_request_error (api/errors.py)."""
    components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            for content in operation.get("requestBody", {}).get("content", {}).values():
                schema = content["schema"]
                if "title" not in schema:
                    continue
                for name, definition in {**schema.pop("$defs", {}), schema["title"]: schema}.items():
                    if components.setdefault(name, definition) != definition:
                        raise ValueError(f"two schemas are named {name} in the OpenAPI document")
                content["schema"] = {"$ref": REF.format(model=schema["title"])}
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return document
