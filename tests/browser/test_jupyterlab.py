"""The quickstart notebook in a real JupyterLab, driven by Debian's chromium through Playwright.

A JupyterLab server is started on 127.0.0.1 (a free port, token off, fresh settings and
workspaces) on a temporary copy of ``notebooks/quickstart.ipynb``; the page opens it and runs all
cells from the Run menu, as a person would. Then one round is ranked with a real mouse drag and
one with the keyboard only, and each time the kernel's round log (the SQLite file at
``LABKIT_DB``, read here with :class:`labkit.roundlog.RoundLog`) must hold exactly the ranking the
page showed. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import re
import shutil
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
    wait_for_widget,
)
from tests.conftest import open_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A page of a real JupyterLab showing the quickstart notebook after Run All; and the log."""
    root = tmp_path_factory.mktemp("jupyterlab")
    work = root / "work"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    db = root / "rounds.sqlite"
    env = server_env(root, db=db)
    # No news fetching (no network here) and no toast over the notebook.
    settings = root / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port = free_port()
    argv = [
        jupyter_bin("jupyter-lab"),
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={work}",
        f"--LabApp.workspaces_dir={root / 'lab-workspaces'}",
        f"--LabApp.user_settings_dir={root / 'lab-settings'}",
        "--LabApp.news_url=",
    ]
    with (
        running_server(argv, port=port, env=env, cwd=work, log_path=root / "server.log") as srv,
        open_page(browser, width=1400) as (page, errors),
    ):
        page.goto(f"{srv.url}/lab/tree/{NOTEBOOK.name}", timeout=60_000)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        wait_for_widget(page, srv, root / "failed.png", start=lambda: _run_all_cells(page))
        yield page, db
    assert errors == [], f"JavaScript errors in JupyterLab: {errors}"


def _kernel_idle(page: Any, timeout_s: float) -> None:
    """Wait until the status bar says the notebook's kernel is idle (started and connected)."""
    page.locator(".jp-StatusBar-Item", has_text="| Idle").first.wait_for(
        state="visible", timeout=timeout_s * 1000
    )


def _run_all_cells(page: Any) -> None:
    """Run → Run All Cells from the menu bar, once the kernel is ready; again if it was lost.

    JupyterLab may replace the kernel it starts first when it opens a notebook; cells sent to
    the kernel in that moment are dropped (their prompts still say "[*]", set by the page). So
    success is a *finished* cell, a number in a prompt; the run is repeated only when none
    finished and the kernel sits idle, i.e. it never got the cells (repeating while they run
    would run the notebook twice).
    """
    prompts = page.locator(".jp-InputArea-prompt")
    finished = prompts.filter(has_text=re.compile(r"\[\d+\]")).first
    for _ in range(3):
        _kernel_idle(page, KERNEL_RUN_S)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            finished.wait_for(timeout=KERNEL_RUN_S * 1000)
            return
        except Exception:
            if finished.count():
                return
            _kernel_idle(page, 10)  # raises if the kernel is busy: the cells are still running
    raise AssertionError("Run All Cells: no cell ever finished, the kernel stayed idle")


def test_jupyterlab_mouse_drag_ranking_is_logged(lab: tuple[Any, Path], artifacts: Path) -> None:
    page, db = lab
    rank_by_drag_and_check(page, db, artifacts / "jupyterlab-drag.png", timeout_s=60)


def test_jupyterlab_keyboard_ranking_is_logged(lab: tuple[Any, Path], artifacts: Path) -> None:
    page, db = lab
    rank_by_keyboard_and_check(page, db, artifacts / "jupyterlab-keyboard.png", timeout_s=60)
