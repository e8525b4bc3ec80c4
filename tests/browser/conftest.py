"""Browser tests: Playwright's sync API driving the system's Chromium (Debian's `chromium` package),
never a browser that `playwright install` downloads.

While Playwright's sync API is started, its event loop counts as the running loop of the main
thread, so pytest-asyncio cannot run an async test then ("Runner.run() cannot be called from a
running event loop"). The browser therefore lives for this package only (scope "package"): it
is closed before the tests after tests/browser run, and the tests here are plain `def` tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

# Read once, at import: tests run with SIJO_* variables removed (tests/conftest.py).
NAMED = os.environ.get("SIJO_CHROMIUM")
ARTIFACTS = Path(os.environ.get("SIJO_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts")
SCREENSHOTS = ARTIFACTS / "screenshots"

# As root in a container Chromium's sandbox cannot start; /dev/shm there is often too small.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]


def chromium_binary() -> str | None:
    """`SIJO_CHROMIUM`, else `chromium` or `chromium-browser` on PATH; None if none is there."""
    if NAMED:
        return NAMED if os.access(NAMED, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG of `page` as `<name>.png` under SCREENSHOTS and return its path."""
    path = SCREENSHOTS / (name if name.endswith(".png") else f"{name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    return path


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the browser tests; missing Chromium fails them, never skips."""
    binary = chromium_binary()
    if binary is None:
        pytest.fail(
            f"no Chromium: install it with `apt-get install chromium` (or set SIJO_CHROMIUM; it is {NAMED!r})"
            if NAMED
            else "no Chromium: install it with `apt-get install chromium` (or set SIJO_CHROMIUM to its binary)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=binary, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies or storage shared with other tests)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()
