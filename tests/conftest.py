"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.bench._common import CHROMIUM, CHROMIUM_FLAGS


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian chromium for the whole run.

    Session-wide on purpose: Playwright's sync API refuses a second ``sync_playwright()`` while
    another is alive in the same process, so every browser test shares this one.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (python)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS), headless=True)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def open_page(
    browser: Any, *, width: int = 1200, height: int = 1000
) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh context of ``browser``, and the list its JavaScript errors go to.

    The context is closed on exit whatever happened; the caller asserts on the errors.
    """
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page, errors
    finally:
        context.close()
