"""Attachments: every image and document of a request, loaded and decoded before the prompt is laid out.

Sources are read once per request, in parallel where they are fetched: base64 data is decoded, a
`url` is fetched under the operator's fetch policy (`media/fetch.py`), a `file` id is read from the
Files API store of the request's workspace. Images become `Bitmap`s (decoded, checked and
downscaled as the API does: `media/images.py`); PDFs become pages of text, and of pixels when the
model reads images (`media/pdf.py`).

What comes out is keyed by each source's content (`source_key`), not by where the block sits, so
the same lookup serves the request as sent and as its context edits left it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

from sijo.engines.base import Bitmap
from sijo.errors import InvalidRequestError
from sijo.media import images, pdf
from sijo.media.fetch import FetchPolicy, fetch
from sijo.media.pdf import PdfPage
from sijo.protocol.content import (
    Base64ImageSource,
    Base64PdfSource,
    ContentBlockParam,
    ContentBlockSource,
    DocumentBlockParam,
    FileDocumentSource,
    FileImageSource,
    ImageBlockParam,
    ImageSource,
    PlainTextSource,
    ToolResultBlockParam,
    ToolResultContentParam,
    UrlImageSource,
    UrlPdfSource,
)
from sijo.protocol.params import MessageParam


@dataclass(frozen=True, slots=True)
class StoredBytes:
    """A Files API file's declared type and size, and its content unless it was over the size the
    reader was asked for (then `data` is None and nothing was read)."""

    mime_type: str
    size: int
    data: bytes | None


# Reads a Files API file of the request's workspace, if it is at most `max_bytes` long: (file id,
# max_bytes) → the file, or None if there is no such file.
FileReader = Callable[[str, int], Awaitable[StoredBytes | None]]


async def _no_files(_file_id: str, _max_bytes: int) -> StoredBytes | None:
    return None


IMAGE_FILE_MAX_BYTES = 5 * 1024 * 1024  # the API's per-image limit, for images given by file or URL
_LOADS_AT_ONCE = 8  # sources fetched or decoded at the same time


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """A `document` block's content: PDF pages, plain text, or content blocks (text or images)."""

    kind: Literal["pdf", "text", "content"]
    pages: tuple[PdfPage, ...] = ()
    text: str = ""
    blocks: tuple[str | Bitmap, ...] = ()


SourceKey = tuple[str, str]


def source_key(source: ImageSource | Base64PdfSource | UrlPdfSource | FileDocumentSource) -> SourceKey:
    """What identifies a source's content: the hash of inline data, the URL, or the file id."""
    if isinstance(source, Base64ImageSource | Base64PdfSource):  # each declared type is checked
        return (f"base64:{source.media_type}", hashlib.sha256(source.data.encode()).hexdigest())
    if isinstance(source, UrlImageSource | UrlPdfSource):
        return ("url", source.url)
    return ("file", source.file_id)


class DecodedImages:
    """Recently decoded inline images, by their data and declared type, so an image sent again is
    not decoded again: decoding a 640x480 PNG takes longer than reading it from a warm prompt cache.
    Only base64 sources: a URL's content may change, and a file may be deleted or belong to another
    workspace. Used on the event loop only."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._used = 0
        self._images: OrderedDict[tuple[SourceKey, bool], Bitmap] = OrderedDict()

    def get(self, key: tuple[SourceKey, bool]) -> Bitmap | None:
        found = self._images.get(key)
        if found is not None:
            self._images.move_to_end(key)
        return found

    def put(self, key: tuple[SourceKey, bool], bitmap: Bitmap) -> None:
        if key in self._images or len(bitmap.rgb) > self._max_bytes:
            return
        self._images[key] = bitmap
        self._used += len(bitmap.rgb)
        while self._used > self._max_bytes:
            _, old = self._images.popitem(last=False)
            self._used -= len(old.rgb)


@dataclass(slots=True)
class Attachments:
    """The request's decoded images and loaded PDFs, by source."""

    images: dict[SourceKey, Bitmap] = field(default_factory=dict)
    documents: dict[SourceKey, LoadedDocument] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)  # container_upload file id → its name

    def image(self, source: ImageSource, where: str) -> Bitmap:
        bitmap = self.images.get(source_key(source))
        if bitmap is None:  # a block that was not in the request as loaded: a bug, not the client's
            raise RuntimeError(f"{where}: an image that was not loaded")
        return bitmap

    def document(self, block: DocumentBlockParam, where: str) -> LoadedDocument:
        source = block.source
        if isinstance(source, PlainTextSource):
            return LoadedDocument("text", text=source.data)
        if isinstance(source, ContentBlockSource):
            return LoadedDocument("content", blocks=self._content_blocks(source, where))
        document = self.documents.get(source_key(source))
        if document is None:
            raise RuntimeError(f"{where}: a document that was not loaded")
        return document

    def _content_blocks(self, source: ContentBlockSource, where: str) -> tuple[str | Bitmap, ...]:
        if isinstance(source.content, str):
            return (source.content,)
        return tuple(
            block.text
            if not isinstance(block, ImageBlockParam)
            else self.image(block.source, f"{where}.source.content.{j}")
            for j, block in enumerate(source.content)
        )


@dataclass(frozen=True, slots=True)
class _Found:
    where: str  # the block's field path
    source: ImageSource | Base64PdfSource | UrlPdfSource | FileDocumentSource
    kind: Literal["image", "pdf"]


def _blocks(messages: list[MessageParam]) -> Iterator[tuple[str, ContentBlockParam | ToolResultContentParam]]:
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            continue
        for j, block in enumerate(message.content):
            yield f"messages.{i}.content.{j}", block
            if isinstance(block, ToolResultBlockParam) and isinstance(block.content, list):
                for k, inner in enumerate(block.content):
                    yield f"messages.{i}.content.{j}.content.{k}", inner


def _sources(messages: list[MessageParam]) -> list[_Found]:
    found: list[_Found] = []
    for where, block in _blocks(messages):
        if isinstance(block, ImageBlockParam):
            found.append(_Found(where, block.source, "image"))
        elif isinstance(block, DocumentBlockParam):
            source = block.source
            if isinstance(source, ContentBlockSource) and isinstance(source.content, list):
                found += [
                    _Found(f"{where}.source.content.{k}", inner.source, "image")
                    for k, inner in enumerate(source.content)
                    if isinstance(inner, ImageBlockParam)
                ]
            elif not isinstance(source, PlainTextSource | ContentBlockSource):
                found.append(_Found(where, source, "pdf"))
    return found


async def load_attachments(
    messages: list[MessageParam],
    *,
    read_file: FileReader = _no_files,
    policy: FetchPolicy | None = None,
    read_images: bool,
    model: str,
    decoded: DecodedImages | None = None,
) -> Attachments:
    """Load every image and PDF of `messages`. `read_images`: the model has a projector (else an
    image block is the API's 400, and PDF pages are read as text only)."""
    found = _sources(messages)
    attachments = Attachments()
    if not found:
        return attachments
    pictures = [item for item in found if item.kind == "image"]
    if pictures and not read_images:
        raise InvalidRequestError(f"{pictures[0].where}: {model} does not support image input")
    images.check_image_count(len(pictures))
    unique: dict[tuple[str, SourceKey], _Found] = {}
    for item in found:
        unique.setdefault((item.kind, source_key(item.source)), item)
    many = len(pictures) > images.MANY_IMAGES
    loader = _Loader(read_file, policy, many=many, render=read_images, decoded=decoded or DecodedImages(0))
    # A failed source cancels the others (the request is a 400 already); a few load at a time.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(loader.load(item)) for item in unique.values()]
    except ExceptionGroup as failed:  # the first source that failed says why
        raise failed.exceptions[0] from None
    for (kind, key), task in zip(unique, tasks, strict=True):
        value = task.result()
        if kind == "image":
            assert isinstance(value, Bitmap)
            attachments.images[key] = value
        else:
            assert isinstance(value, LoadedDocument)
            attachments.documents[key] = value
    # The API counts images and PDF pages together, each time a source is given.
    pages = sum(len(attachments.documents[source_key(i.source)].pages) for i in found if i.kind == "pdf")
    images.check_image_count(len(pictures), pages)
    return attachments


@dataclass(slots=True)
class _Loader:
    read_file: FileReader
    policy: FetchPolicy | None
    many: bool
    render: bool
    decoded: DecodedImages
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(_LOADS_AT_ONCE))

    async def load(self, item: _Found) -> Bitmap | LoadedDocument:
        async with self.slots:
            if item.kind == "image":
                return await self._image(item)
            data, declared = await self._bytes(item)
            return await self._document(item, data, declared)

    async def _image(self, item: _Found) -> Bitmap:
        key = (source_key(item.source), self.many)
        remembered = isinstance(item.source, Base64ImageSource)
        bitmap = self.decoded.get(key) if remembered else None
        if bitmap is None:
            data, declared = await self._bytes(item)
            bitmap = await asyncio.to_thread(
                images.decode_image, data, media_type=declared, field=item.where, many=self.many
            )
            if remembered:
                self.decoded.put(key, bitmap)
        return bitmap

    async def _document(self, item: _Found, data: bytes, declared: str | None) -> LoadedDocument:
        if isinstance(item.source, FileDocumentSource) and (declared or "").startswith("text/"):
            try:
                return LoadedDocument("text", text=data.decode("utf-8"))
            except UnicodeDecodeError:
                where = f"{item.where}.source.file_id"
                raise InvalidRequestError(f"{where}: the text file is not UTF-8") from None
        if declared not in (None, pdf.MEDIA_TYPE) and not data.startswith(b"%PDF-"):
            raise InvalidRequestError(
                f"{item.where}.source: a {declared} file cannot be a PDF document; documents given as "
                "files or URLs must be PDFs or, as files, plain text"
            )
        read = await asyncio.to_thread(pdf.read_pdf, data, field=item.where, render=self.render)
        return LoadedDocument("pdf", pages=tuple(read))

    async def _bytes(self, item: _Found) -> tuple[bytes, str | None]:
        """The source's bytes, and the media type the client declared (base64) or the file has."""
        source = item.source
        limit = IMAGE_FILE_MAX_BYTES if item.kind == "image" else pdf.MAX_PDF_BYTES
        if isinstance(source, Base64ImageSource | Base64PdfSource):
            if isinstance(source, Base64ImageSource):
                images.check_base64_size(source.data, f"{item.where}.source.data")
            return _base64(source.data, f"{item.where}.source.data"), source.media_type
        if isinstance(source, UrlImageSource | UrlPdfSource):
            if self.policy is None:
                raise InvalidRequestError(f"{item.where}.source.url: URL sources are not enabled")
            policy = replace(self.policy, max_bytes=min(self.policy.max_bytes, limit))
            fetched = await fetch(source.url, policy, field=item.where)
            return fetched.data, None
        assert isinstance(source, FileImageSource | FileDocumentSource)
        stored = await self.read_file(source.file_id, limit)
        if stored is None:
            raise InvalidRequestError(f"{item.where}.source.file_id: File not found: {source.file_id}")
        if stored.data is None:
            raise InvalidRequestError(
                f"{item.where}.source.file_id: the file is {stored.size} bytes, more than the "
                f"{limit} bytes an {item.kind} may have"
            )
        # An image file's bytes say what it is (`decode_image` sniffs them); a document file's type
        # says whether it is a PDF or text.
        return stored.data, (stored.mime_type if item.kind == "pdf" else None)


def _base64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{where}: invalid base64 data") from None
