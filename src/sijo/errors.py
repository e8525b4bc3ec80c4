"""The error tree: every failure Sijo reports is one of these, named after the Claude API's error types.

    ApiError
    ├── InvalidRequestError      400 invalid_request_error
    │   ├── PromptTooLongError   400 invalid_request_error ("prompt is too long: N tokens > M maximum")
    │   └── ThreadUnsupportedRequestError  400, details.error_code "thread_unsupported_request"
    ├── AuthenticationError      401 authentication_error
    ├── PermissionDeniedError    403 permission_error
    ├── NotFoundError            404 not_found_error
    ├── RequestTimeoutError      408 timeout_error (the body stopped arriving)
    ├── RequestTooLargeError     413 request_too_large
    ├── RateLimitError           429 rate_limit_error
    ├── InternalServerError      500 api_error
    ├── GatewayTimeoutError      504 timeout_error
    └── OverloadedError          529 overloaded_error
        └── UpstreamUnavailableError  529 (an upstream engine or API did not answer: the router
                                       fails over to the next route while nothing was sent)

Errors are raised, never returned; `api/errors.py` renders them in one place as
`{"type":"error","error":{"type","message"},"request_id"}` (reference §4), plus `error.details` for
an error that has them (`{"error_code": ...}`, which the SDKs map to their own error classes and act
on). A value the client sent is put in a message through `shown`, so that a 1 MB model name is not
answered with a 1 MB error.
"""

from __future__ import annotations

from typing import Any, ClassVar

# The most characters of a client's value that an error message repeats: enough to recognize it.
SHOWN_LIMIT = 100


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """`value` as text for an error message, its first `limit` characters if it is longer."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


class ApiError(Exception):
    """An error with its HTTP identity: status code and Anthropic error type."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.details = details

    def body(self, request_id: str | None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"type": "error", "error": error, "request_id": request_id}


class InvalidRequestError(ApiError):
    status_code: ClassVar[int] = 400
    error_type: ClassVar[str] = "invalid_request_error"


class PromptTooLongError(InvalidRequestError):
    def __init__(self, tokens: int, maximum: int) -> None:
        super().__init__(f"prompt is too long: {tokens} tokens > {maximum} maximum")
        self.tokens = tokens
        self.maximum = maximum


class ThreadUnsupportedRequestError(InvalidRequestError):
    """A request with `thread` (the message-threads beta): Sijo keeps no conversations on the server.
    The API's own rejection of a request it cannot thread, so SDK helpers (`tool_runner`) go on
    without a thread by themselves, sending the whole conversation."""

    def __init__(self) -> None:
        super().__init__(
            "thread: message threads are not supported by Sijo; send the full conversation without `thread`",
            details={"error_code": "thread_unsupported_request"},
        )


class AuthenticationError(ApiError):
    status_code: ClassVar[int] = 401
    error_type: ClassVar[str] = "authentication_error"


class PermissionDeniedError(ApiError):
    status_code: ClassVar[int] = 403
    error_type: ClassVar[str] = "permission_error"


class NotFoundError(ApiError):
    status_code: ClassVar[int] = 404
    error_type: ClassVar[str] = "not_found_error"


class RequestTooLargeError(ApiError):
    status_code: ClassVar[int] = 413
    error_type: ClassVar[str] = "request_too_large"


class RateLimitError(ApiError):
    status_code: ClassVar[int] = 429
    error_type: ClassVar[str] = "rate_limit_error"


class InternalServerError(ApiError):
    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"


class GatewayTimeoutError(ApiError):
    status_code: ClassVar[int] = 504
    error_type: ClassVar[str] = "timeout_error"


class OverloadedError(ApiError):
    status_code: ClassVar[int] = 529
    error_type: ClassVar[str] = "overloaded_error"


class UpstreamUnavailableError(OverloadedError):
    """An upstream (an engine server, the Claude API) refused to connect, failed or went away."""


class RequestTimeoutError(ApiError):
    """The client stopped sending its request body (api/timeouts.py): HTTP's 408, in the API's
    vocabulary of `timeout_error`."""

    status_code: ClassVar[int] = 408
    error_type: ClassVar[str] = "timeout_error"
