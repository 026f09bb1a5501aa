"""The quickstart notebook as a Voilà app, driven by Debian's chromium through Playwright.

A Voilà server is started on 127.0.0.1 (a free port, fresh Jupyter dirs) on
``notebooks/quickstart.ipynb`` with ``LABKIT_DB`` pointing at a temporary log and
``LABKIT_SMOKE=1``; opening the page runs the notebook. One round is ranked with a real mouse
drag and one with the keyboard only, and each time the kernel's round log (read here with
:class:`labkit.store.RoundLog`) must hold exactly the ranking the page showed. Voilà executes
nothing the browser sends (no code cells run from the page): the loop goes through the widget's
trait only. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    CHROMIUM,
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


def test_latency_bench_runs_against_voila(tmp_path: Path) -> None:
    """``labkit bench latency`` end to end, a few rounds: its figures are consistent."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api", reason="needs playwright (python)")
    # In a process of its own: this one already runs Playwright's event loop (the page fixture).
    out = tmp_path / "latency.json"
    argv = ["--rounds", "3", "--warmup", "1", "--pause", "0.1", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "labkit.bench.latency", *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(NOTEBOOK.parents[1])},
        capture_output=True,
        text=True,
        timeout=KERNEL_RUN_S + 120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "click → next round painted" in run.stdout
    result = json.loads(out.read_text())
    per = result["per_round"]
    assert len(per["painted"]) == len(per["dom"]) == len(per["kernel"]) == len(per["after"]) == 3
    for painted, dom, kernel, after in zip(
        per["painted"], per["dom"], per["kernel"], per["after"], strict=True
    ):
        # The kernel's work until it sends the next round happens between the click and that
        # round reaching the DOM, which comes before it is painted. (Its work after sending, the
        # plot update, may outlast the DOM update: that is the point of sending the round first.)
        assert 0 < kernel < dom <= painted < 30
        assert after >= 0
    assert result["painted"]["median"] == sorted(per["painted"])[1]
