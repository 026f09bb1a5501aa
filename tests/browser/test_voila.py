"""The quickstart notebook as a Voilà app, driven by Debian's chromium through Playwright.

A Voilà server is started on 127.0.0.1 (a free port, fresh Jupyter dirs) on
``notebooks/quickstart.ipynb`` with ``LABKIT_DB`` pointing at a temporary log and
``LABKIT_SMOKE=1``; opening the page runs the notebook. One round is ranked with a real mouse
drag and one with the keyboard only, and each time the kernel's round log (read here with
:class:`labkit.roundlog.RoundLog`) must hold exactly the ranking the page showed. Voilà executes
nothing the browser sends (no code cells run from the page): the loop goes through the widget's
trait only. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    KERNEL_RUN_S,
    NOTEBOOK,
    free_port,
    jupyter_bin,
    rank_by_drag_and_check,
    rank_by_keyboard_and_check,
    running_server,
    server_env,
    shown_round,
    wait_for_widget,
)
from tests.conftest import open_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A page of the Voilà app after the notebook ran; and the log it writes."""
    root = tmp_path_factory.mktemp("voila")
    db = root / "rounds.sqlite"
    env = server_env(root, db=db)
    port = free_port()
    argv = [
        jupyter_bin("voila"),
        str(NOTEBOOK),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={port}",
        "--Voila.port_retries=0",
        "--show_tracebacks=True",
    ]
    log = root / "server.log"
    with (
        running_server(argv, port=port, env=env, cwd=NOTEBOOK.parent, log_path=log) as srv,
        open_page(browser) as (page, errors),
    ):
        page.goto(srv.url + "/", timeout=KERNEL_RUN_S * 1000)
        wait_for_widget(page, srv, root / "failed.png")
        yield page, db
    assert errors == [], f"JavaScript errors in Voilà: {errors}"


def test_voila_mouse_drag_ranking_is_logged(app: tuple[Any, Path], artifacts: Path) -> None:
    page, db = app
    rank_by_drag_and_check(page, db, artifacts / "voila-drag.png", timeout_s=60)


def test_voila_keyboard_ranking_is_logged(app: tuple[Any, Path], artifacts: Path) -> None:
    page, db = app
    rank_by_keyboard_and_check(page, db, artifacts / "voila-keyboard.png", timeout_s=60)


def test_voila_progress_plot_shows_the_rounds(app: tuple[Any, Path], artifacts: Path) -> None:
    page, db = app
    if shown_round(page) == 0:
        rank_by_keyboard_and_check(page, db, artifacts / "voila-keyboard.png", timeout_s=60)
    done = shown_round(page)
    # plotly.js keeps a figure's traces on its graph div as `data`; trace 0 is the score. The
    # session sends the plot's update after the next round (so the person never waits for it):
    # the round can be on screen before its point is, so wait for the point.
    points_js = (
        "() => { const gd = document.querySelector('.js-plotly-plot');"
        " return gd && gd.data && gd.data.length ? gd.data[0].x.length : -1; }"
    )
    try:
        page.wait_for_function(f"n => ({points_js})() === n", arg=done, timeout=60_000)
    finally:
        page.screenshot(path=str(artifacts / "voila-progress.png"), full_page=True)
    points = page.evaluate(points_js)
    assert points == done, f"{done} rounds were ranked; the score trace shows {points} points"
