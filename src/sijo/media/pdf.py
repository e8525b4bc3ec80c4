"""PDF documents by the Claude API's rules: each page's text and, for a model that reads images, a
picture of each page (the API gives a model both). Limits: 32 MB, 100 pages, no password.

Field paths follow `images.py`: `field` is the document block's path (`messages.0.content.1`), and
a rejection appends `.source.media_type` or `.source.data`.

pdfium (through pypdfium2) is not thread-safe, and decoding runs on worker threads: every pdfium
call is made holding `PDFIUM_LOCK`, the one piece of module state, and every pdfium object is closed
before the lock is let go (a finalizer running later, on another thread, would be a pdfium call
outside the lock).

Reference: the Claude API PDF support guide.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
from PIL import Image

from sijo.engines.base import Bitmap
from sijo.errors import InvalidRequestError
from sijo.media.images import scaled_size, to_bitmap

MEDIA_TYPE = "application/pdf"
MAX_PDF_BYTES = 32 * 1024 * 1024
MAX_PDF_PAGES = 100
# Pages are rendered at most at 300 dpi (PDF units are 1/72 inch): a small page is not blown up.
MAX_RENDER_DPI = 300

# pdfium keeps global state and may be entered by one thread at a time (see the module docstring).
PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class PdfPage:
    """One page: `number` counts from 1; `image` is None unless pages were rendered."""

    number: int
    text: str
    image: Bitmap | None


def check_pdf_media_type(media_type: str, field: str) -> None:
    """Refuse a base64 document source that does not declare `application/pdf`."""
    if media_type != MEDIA_TYPE:
        raise InvalidRequestError(f"{field}.source.media_type: Input should be '{MEDIA_TYPE}'")


def read_pdf(data: bytes, *, field: str, render: bool) -> list[PdfPage]:
    """PDF bytes → its pages' text, and a `Bitmap` of each page when `render` (sized as the API
    sizes images: long side at most 1568 px, at most 1.15 MP)."""
    if len(data) > MAX_PDF_BYTES:
        raise InvalidRequestError(
            f"{field}.source.data: PDF exceeds 32 MB maximum: {len(data)} bytes > {MAX_PDF_BYTES} bytes"
        )
    with PDFIUM_LOCK:
        document = _open(data, field)
        try:
            if len(document) > MAX_PDF_PAGES:
                raise InvalidRequestError(
                    f"{field}.source.data: A maximum of {MAX_PDF_PAGES} PDF pages may be provided."
                )
            return [_read_page(document, index, render) for index in range(len(document))]
        except pdfium.PdfiumError as exc:
            raise _not_valid(field) from exc
        finally:
            document.close()


def _open(data: bytes, field: str) -> Any:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
            raise InvalidRequestError(
                f"{field}.source.data: The PDF specified is password-protected; "
                "only PDFs without a password can be read."
            ) from None
        raise _not_valid(field) from exc


def _not_valid(field: str) -> InvalidRequestError:
    return InvalidRequestError(f"{field}.source.data: The PDF specified was not valid.")


def _read_page(document: Any, index: int, render: bool) -> PdfPage:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            text = normalize_text(str(textpage.get_text_range()))
        finally:
            textpage.close()
        image = _render(page) if render else None
    finally:
        page.close()
    return PdfPage(number=index + 1, text=text, image=image)


def normalize_text(text: str) -> str:
    """pdfium's text with `\\n` line ends, no spaces at line ends, no blank lines at the end."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip("\n")


def _render(page: Any) -> Bitmap:
    """The page as an RGB bitmap at the size the API would scale it to."""
    width, height = (float(side) for side in page.get_size())
    bitmap = page.render(scale=render_scale(width, height))
    try:
        image: Image.Image = bitmap.to_pil()
        return to_bitmap(image)
    finally:
        bitmap.close()


def render_scale(width: float, height: float) -> float:
    """Pixels per PDF unit for a page of `width` x `height` units: 300 dpi at most, then shrunk as
    the API shrinks images. One scale serves both sides, so the side that does not set it may
    come out a pixel or two short of the API's size; pdfium rounds each side up, so the scale is
    shaded a hair down to never land a pixel past it."""
    width, height = max(width, 1.0), max(height, 1.0)  # pdfium mends degenerate boxes; never divide by 0
    nominal = (max(1, round(width * MAX_RENDER_DPI / 72)), max(1, round(height * MAX_RENDER_DPI / 72)))
    target_width, target_height = scaled_size(*nominal)
    return min(target_width / width, target_height / height) * (1 - 1e-9)
