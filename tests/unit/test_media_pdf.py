"""PDFs: each page's text, each page's picture at the size the API would give it, and the API's
limits (32 MB, 100 pages, no password, a PDF at all). The PDFs are made here with fpdf2."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from fpdf import FPDF

from sijo.errors import InvalidRequestError
from sijo.media import pdf as pdf_module
from sijo.media.images import pixel_digest, scaled_size
from sijo.media.pdf import MAX_PDF_BYTES, check_pdf_media_type, normalize_text, read_pdf, render_scale

FIELD = "messages.0.content.1"


def make_pdf(
    pages: int = 3,
    *,
    size: str | tuple[float, float] = "A4",
    orientation: str = "portrait",
    user_password: str | None = None,
    owner_password: str | None = None,
) -> bytes:
    pdf = FPDF(orientation=orientation, format=size)
    pdf.set_font("helvetica", size=14)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(text=f"Page {number} says hello")
        pdf.ln()
        pdf.cell(text="second line")
    if owner_password is not None:
        pdf.set_encryption(owner_password=owner_password, user_password=user_password)
    return bytes(pdf.output())


def rejection(data: bytes) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        read_pdf(data, field=FIELD, render=False)
    return caught.value.message


@pytest.fixture(scope="module")
def three_pages() -> bytes:
    return make_pdf(3)


def test_text_of_each_page(three_pages: bytes) -> None:
    pages = read_pdf(three_pages, field=FIELD, render=False)
    assert [page.number for page in pages] == [1, 2, 3]
    assert [page.text for page in pages] == [f"Page {n} says hello\nsecond line" for n in (1, 2, 3)]
    assert all(page.image is None for page in pages)


def test_text_is_normalized() -> None:
    assert normalize_text("one  \r\ntwo\t\rthree \r\n\r\n") == "one\ntwo\nthree"


def test_rendered_pages_are_sized_as_the_api_sizes_images(three_pages: bytes) -> None:
    pages = read_pdf(three_pages, field=FIELD, render=True)
    for page in pages:
        image = page.image
        assert image is not None
        assert max(image.width, image.height) <= 1568
        assert 1_100_000 < image.width * image.height <= 1_150_000
        assert image.width / image.height == pytest.approx(210 / 297, rel=0.01)
        assert len(image.rgb) == image.width * image.height * 3
        assert image.rgb[:3] == b"\xff\xff\xff"  # the page's white corner
        assert image.digest == pixel_digest(image.width, image.height, image.rgb)
    assert len({page.image.digest for page in pages if page.image}) == 3


def test_landscape_and_small_pages() -> None:
    [wide] = read_pdf(make_pdf(1, orientation="landscape"), field=FIELD, render=True)
    assert wide.image is not None and wide.image.width > wide.image.height
    [small] = read_pdf(make_pdf(1, size=(50, 50)), field=FIELD, render=True)
    assert small.image is not None
    assert small.image.width == small.image.height == round(50 / 25.4 * 300)  # 300 dpi, no more


def test_at_most_100_pages() -> None:
    assert len(read_pdf(make_pdf(100), field=FIELD, render=False)) == 100
    assert rejection(make_pdf(101)) == f"{FIELD}.source.data: A maximum of 100 PDF pages may be provided."


def test_at_most_32_mb() -> None:
    data = b"%PDF-1.4\n" + bytes(MAX_PDF_BYTES)
    assert rejection(data) == (
        f"{FIELD}.source.data: PDF exceeds 32 MB maximum: {len(data)} bytes > {MAX_PDF_BYTES} bytes"
    )


@pytest.mark.parametrize("cut", [0.5, 0.1])
def test_truncated_pdf_is_not_valid(three_pages: bytes, cut: float) -> None:
    data = three_pages[: int(len(three_pages) * cut)]
    assert rejection(data) == f"{FIELD}.source.data: The PDF specified was not valid."


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_not_a_pdf(data: bytes) -> None:
    assert rejection(data) == f"{FIELD}.source.data: The PDF specified was not valid."


def test_password_protected_pdf_is_refused() -> None:
    data = make_pdf(1, owner_password="owner", user_password="secret")
    message = rejection(data)
    assert message.startswith(f"{FIELD}.source.data: ")
    assert "password-protected" in message


def test_pdf_that_opens_without_a_password_is_read() -> None:
    """Encrypted with an owner password only (permissions), it opens for anyone, as in any viewer."""
    [page] = read_pdf(make_pdf(1, owner_password="owner"), field=FIELD, render=False)
    assert page.text.startswith("Page 1")


def test_media_type_must_be_pdf() -> None:
    check_pdf_media_type("application/pdf", FIELD)
    with pytest.raises(InvalidRequestError) as caught:
        check_pdf_media_type("text/plain", FIELD)
    assert caught.value.message == f"{FIELD}.source.media_type: Input should be 'application/pdf'"


def test_render_scale_lands_on_the_target_size() -> None:
    """pdfium makes a bitmap of ceil(side x scale) pixels: never past the API's size, and short of
    it by no more than the rounding of the other side carries over (the aspect ratio, plus one)."""
    for width in (k / 7 for k in range(100, 3000, 37)):
        for aspect in (1.0, 1.414, 0.7, 0.1):
            height = width * aspect
            target = scaled_size(max(1, round(width * 300 / 72)), max(1, round(height * 300 / 72)))
            scale = render_scale(width, height)
            rendered = (math.ceil(width * scale), math.ceil(height * scale))
            slack = math.ceil(max(aspect, 1 / aspect)) + 1
            assert target[0] - slack <= rendered[0] <= target[0], (width, height)
            assert target[1] - slack <= rendered[1] <= target[1], (width, height)


def test_pdfium_is_only_called_holding_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """pdfium is not thread-safe: every call into it, closing included, holds the module's lock."""
    calls: list[tuple[str, bool]] = []

    def watched(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, pdf_module.PDFIUM_LOCK.locked()))
            return original(*args, **kwargs)

        return call

    classes = [pdfium.PdfDocument, pdfium.PdfPage, pdfium.PdfTextPage, pdfium.PdfBitmap]
    document, page, textpage, bitmap = classes
    for cls, method in [
        (document, "__len__"),
        (document, "__getitem__"),
        (document, "close"),
        (page, "get_textpage"),
        (page, "get_size"),
        (page, "render"),
        (page, "close"),
        (textpage, "get_text_range"),
        (textpage, "close"),
        (bitmap, "to_pil"),
        (bitmap, "close"),
    ]:
        monkeypatch.setattr(cls, method, watched(f"{cls.__name__}.{method}", getattr(cls, method)))
    monkeypatch.setattr(pdfium, "PdfDocument", watched("open", document))
    read_pdf(make_pdf(2), field=FIELD, render=True)
    assert {name for name, _ in calls} >= {
        "open",
        "PdfPage.render",
        "PdfTextPage.get_text_range",
        "PdfDocument.close",
    }
    assert [name for name, locked in calls if not locked] == []


def test_threads_read_the_same_pages() -> None:
    data = make_pdf(2)
    expected = read_pdf(data, field=FIELD, render=True)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: read_pdf(data, field=FIELD, render=True), range(16)))
    assert all(result == expected for result in results)
