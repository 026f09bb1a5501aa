"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.bench._common import CHROMIUM, CHROMIUM_FLAGS
from tests._postgres import PostgresServer, find_bin_dir, postgres_server


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole run (see tests/_postgres.py).

    Without PostgreSQL's server binaries or psycopg the tests that need it skip here, and fail
    under CI (``CI=true``), where ``bash scripts/setup.sh --test`` installs both.
    """
    bin_dir = find_bin_dir()
    missing = None
    if bin_dir is None:
        missing = "PostgreSQL's server binaries (initdb, postgres): apt-get install postgresql"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            missing = "psycopg 3: pip install 'labkit[postgres]'"
    if missing is not None or bin_dir is None:
        why = f"needs {missing} (bash scripts/setup.sh --test installs it)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"under CI every test runs: {why}")
        pytest.skip(why)
    with postgres_server(bin_dir) as server:
        yield server
