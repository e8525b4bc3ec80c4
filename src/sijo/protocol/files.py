"""Files API wire types (reference §13): the upload form, `FileMetadata`, its list page and deletion."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sijo.protocol.base import ResponseModel, WireModel

# The bounds the API puts on `expires_in_seconds` (one hour to ninety days).
MIN_EXPIRES_IN = 3600
MAX_EXPIRES_IN = 7_776_000


class FileUploadParams(WireModel):
    """The multipart/form-data body of `POST /v1/files`: this model documents it in the OpenAPI
    description; the route reads the form itself, streaming the file to disk (api/files.py)."""

    file: bytes = Field(description="The file's bytes; the part's filename and content type are kept.")
    expires_in_seconds: int | None = Field(
        default=None,
        ge=MIN_EXPIRES_IN,
        le=MAX_EXPIRES_IN,
        description="Seconds from upload until the file expires and is deleted.",
    )


class FileMetadata(ResponseModel):
    id: str
    type: Literal["file"] = "file"
    filename: str
    mime_type: str
    size_bytes: int
    created_at: str
    # Only files Sijo produces itself can be downloaded; uploaded ones cannot (reference §13).
    downloadable: bool = False
    expires_at: str | None = None


class FileMetadataPage(ResponseModel):
    """Both pagination styles in one answer (reference §0): the beta "Page" (`has_more`,
    `first_id`, `last_id`) and the GA "PageCursor" (`next_page`, sent back as `page`)."""

    data: list[FileMetadata]
    has_more: bool
    first_id: str | None
    last_id: str | None
    next_page: str | None


class DeletedFile(ResponseModel):
    id: str
    type: Literal["file_deleted"] = "file_deleted"
