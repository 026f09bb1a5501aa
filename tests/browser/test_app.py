"""`labkit app NAME` as a person meets it: served by the command, ranked in Debian's chromium.

For every app that needs nothing but itself (the pipeline app needs a pipeline folder) the test
starts ``labkit app NAME --port P --no-browser --db DB`` itself (a free port on 127.0.0.1, fresh
Jupyter dirs, ``LABKIT_SMOKE=1``), opens the tokened link the command prints, waits for the
ranking widget, drags the last tile to the top with the mouse, submits, and checks that the round
log holds exactly the ranking the page showed. A screenshot of each app goes to
``test-artifacts/browser/app-NAME.png``. Two browser contexts at once must get two sessions; a
page opened without the token is refused and starts no kernel.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from labkit.app import APPS, DEFAULT_APP, server_status
from labkit.roundlog import Round, RoundLog
from tests.browser.conftest import (
    KERNEL_RUN_S,
    candidates,
    dom_order,
    drag_tile_to_top,
    free_port,
    label_map,
    running_app,
    server_env,
    shown_round,
    wait_for_round,
)
from tests.conftest import open_page

pytestmark = pytest.mark.browser


#: Apps a test can open with nothing but the app itself.
SELF_CONTAINED = [name for name, app in APPS.items() if not app.needs_pipeline]


@contextmanager
def _app_server(name: str, root: Path, *extra: str) -> Iterator[tuple[str, Path]]:
    """``labkit app name``: yields the tokened link it printed and its round log."""
    db = root / "rounds.sqlite"
    env = server_env(root, db=root / "ignored.sqlite")  # --db must win over the environment
    port = free_port()
    argv = [sys.executable, "-m", "labkit", "app", name, f"--port={port}", "--no-browser"]
    argv += [f"--db={db}", *extra]
    with running_app(argv, port=port, env=env, cwd=root, log_path=root / "server.log") as srv:
        yield srv.link, db


def _goto_app(page: Any, link: str) -> None:
    page.goto(link, timeout=KERNEL_RUN_S * 1000)
    candidates(page).wait_for(state="visible", timeout=KERNEL_RUN_S * 1000)


def _live_rounds(db: Path) -> dict[str, list[Round]]:
    if not db.exists():
        return {}
    with RoundLog(db) as log:
        return {s: log.rounds(s, with_candidates=False) for s in log.sessions()}


def _max_seq(db: Path) -> int:
    return max((r.seq for rs in _live_rounds(db).values() for r in rs), default=0)


def _rank_one_round_by_drag(page: Any, db: Path) -> Round:
    """Drag the last tile to the top, submit, and return the row the kernel logged for it.

    Other sessions may be logging at the same time (a lesson's automated run in another
    visitor's kernel), so the row is found by what it must hold: appended after the click, for
    the round on screen, with the ranking the page showed (the k tiles above the cut line of a
    top-k round, all of them in a full round).
    """
    r = shown_round(page)
    after = _max_seq(db)
    order = drag_tile_to_top(page, len(dom_order(page)))
    page.get_by_role("button", name="Submit ranking").first.click()
    wait_for_round(page, r + 1, timeout_s=KERNEL_RUN_S)
    deadline = time.monotonic() + KERNEL_RUN_S
    while time.monotonic() < deadline:
        new = [x for rs in _live_rounds(db).values() for x in rs if x.seq > after]
        mine = [x for x in new if x.round == r and list(x.ranking) == order[: len(x.ranking)]]
        if mine:
            assert len(mine) == 1, mine
            return mine[0]
        time.sleep(0.2)
    raise AssertionError(f"no row with round {r} and ranking ⊑ {order} in {db}: {new}")


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_each_app_renders_and_a_dragged_round_is_logged(
    name: str, browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    with _app_server(name, tmp_path) as (link, db):
        with open_page(browser) as (page, errors):
            _goto_app(page, link)
            wait_for_round(page, shown_round(page), timeout_s=KERNEL_RUN_S)
            assert label_map(page), "the widget shows labelled candidates"
            fetched = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
            unused = ("jupyterlab-plotly", "jupyterlab_pygments")
            assert not [u for u in fetched if any(x in u for x in unused)], "no app uses them"
            _rank_one_round_by_drag(page, db)
            page.screenshot(path=str(artifacts / f"app-{name}.png"), full_page=True)
        assert errors == [], f"JavaScript errors in app {name!r}: {errors}"
    assert not (tmp_path / "ignored.sqlite").exists(), "--db must be where the app logs"


def test_two_visitors_get_two_independent_sessions(
    browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    with (
        _app_server(DEFAULT_APP, tmp_path) as (link, db),
        open_page(browser) as (first, first_errors),
        open_page(browser) as (second, second_errors),
    ):
        _goto_app(first, link)
        _goto_app(second, link)
        row_a = _rank_one_round_by_drag(first, db)
        row_b = _rank_one_round_by_drag(second, db)
        second.screenshot(path=str(artifacts / "app-second-visitor.png"))
        assert row_a.session_id != row_b.session_id
        sessions = {s: rs for s, rs in _live_rounds(db).items() if rs}
        assert set(sessions) >= {row_a.session_id, row_b.session_id}
        assert [r.round for r in sessions[row_b.session_id]][-1] == row_b.round
        assert first_errors == [] and second_errors == []


def test_a_page_without_the_token_is_refused_and_starts_no_kernel(
    browser: Any, tmp_path: Path
) -> None:
    with (
        _app_server("quickstart", tmp_path, "--pool-size=0") as (link, _db),
        open_page(browser) as (page, _errors),
    ):
        bare = link.partition("?")[0]
        response = page.goto(bare, timeout=60_000)
        assert response is not None and response.status == 403
        text = page.inner_text("body")
        assert "token" in text and len(text) < 200 and "/" not in text, text
        assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
        time.sleep(1.0)
        assert server_status(link)["kernels"] == 0
