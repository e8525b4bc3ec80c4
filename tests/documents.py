"""PDFs made in tests: one page of text per argument (fpdf2, a test dependency)."""

from __future__ import annotations

from fpdf import FPDF


def pdf(*pages: str) -> bytes:
    document = FPDF()
    document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 8, text)
    return bytes(document.output())
