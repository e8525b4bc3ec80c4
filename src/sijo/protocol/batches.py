"""Message Batches wire types (reference §8): the create body, `MessageBatch`, its page and deletion."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sijo.protocol.base import ResponseModel, WireModel


class BatchRequest(WireModel):
    # The pattern is the one the API documents for custom_id; params are validated when the request
    # runs, and a bad one becomes that request's `errored` result, not a failed batch.
    custom_id: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    params: dict[str, Any]


class BatchCreateParams(WireModel):
    requests: list[BatchRequest] = Field(min_length=1)


class RequestCounts(ResponseModel):
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class MessageBatch(ResponseModel):
    id: str
    type: Literal["message_batch"] = "message_batch"
    processing_status: Literal["in_progress", "canceling", "ended"]
    request_counts: RequestCounts
    created_at: str
    expires_at: str
    ended_at: str | None
    cancel_initiated_at: str | None
    archived_at: str | None = None
    results_url: str | None


class MessageBatchPage(ResponseModel):
    data: list[MessageBatch]
    has_more: bool
    first_id: str | None
    last_id: str | None


class DeletedMessageBatch(ResponseModel):
    id: str
    type: Literal["message_batch_deleted"] = "message_batch_deleted"
