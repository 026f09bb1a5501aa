"""A crowd in Debian's chromium: three raters rank the same rounds of one ``labkit app --crowd``.

``labkit app quickstart --crowd --raters 3`` is started on a free port of 127.0.0.1 with a fresh
round log; three browser contexts (three people: their own cookies) open the printed link, each
ranks every round by dragging a tile with the mouse and pressing Submit, and sees how many have
ranked. After each round the log (read here with :class:`labkit.roundlog.RoundLog`) holds the three
raw rankings, each exactly as its page showed it, under its rater, and one consensus.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from labkit.crowd import recompute
from labkit.roundlog import RoundLog
from tests.browser.conftest import (
    KERNEL_RUN_S,
    dom_order,
    drag_tile_to_top,
    free_port,
    running_app,
    server_env,
    shown_round,
    wait_for_round,
)
from tests.conftest import open_page

pytestmark = pytest.mark.browser

ROUNDS = 2
ROUND_S = 60.0


def _crowd_rows(db: Path) -> tuple[list[Any], dict[str, list[Any]], str]:
    """The consensus rows and each rater's rows of the one crowd in the log."""
    with RoundLog(db) as log:
        (crowd,) = [s for s in log.sessions() if "crowd_config" in log.session_meta(s)]
        raters = {
            log.session_meta(s)["rater"]: log.rounds(s, with_candidates=False)
            for s in log.sessions()
            if log.session_meta(s).get("crowd") == crowd
        }
        return log.rounds(crowd, with_candidates=False), raters, crowd


def _count(page: Any) -> str:
    return str(page.locator("#count").inner_text())


def test_three_raters_rank_the_same_rounds(browser: Any, tmp_path: Path, artifacts: Path) -> None:
    db = tmp_path / "rounds.sqlite"
    env = server_env(tmp_path, db=db)
    port = free_port()
    argv = [sys.executable, "-m", "labkit", "app", "quickstart", "--crowd", "--raters", "3"]
    argv += ["--round-seconds", "600", f"--port={port}", "--no-browser", f"--db={db}"]
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            running_app(argv, port=port, env=env, cwd=tmp_path, log_path=tmp_path / "server.log")
        )
        pages = []
        for _ in range(3):
            page, errors = stack.enter_context(open_page(browser))
            page.goto(server.link, timeout=KERNEL_RUN_S * 1000)
            pages.append((page, errors))
        # One rater picks a name; the others rank under the random id their cookie holds.
        first = pages[0][0]
        first.locator("#name").fill("ada")
        first.get_by_role("button", name="Use this name").click()
        first.get_by_text("You rank as ada.").wait_for(timeout=10_000)
        for rnd in range(ROUNDS):
            orders: list[list[int]] = []
            for i, (page, _) in enumerate(pages):
                wait_for_round(page, rnd, timeout_s=ROUND_S)
                assert shown_round(page) == rnd
                assert _count(page).startswith(f"{i} of 3 have ranked round {rnd}") or i == 0
                labels = len(dom_order(page))
                order = drag_tile_to_top(page, labels)
                page.get_by_role("button", name="Submit ranking").click()
                # The last ranking closes the round: the next one may replace the note at once.
                taken = f"Your ranking of round {rnd} is in" if i < 2 else f"Round {rnd + 1}"
                try:
                    page.get_by_text(taken).first.wait_for(timeout=10_000)
                except Exception:
                    page.screenshot(path=str(artifacts / f"crowd-failed-{rnd}-{i}.png"))
                    raise AssertionError(
                        f"rater {i}, round {rnd}: {page.locator('#note').inner_text()!r}, "
                        f"{page.locator('.lk-error').inner_text()!r}; server log:\n"
                        f"{server.log_tail()}"
                    ) from None
                orders.append(order)
                if i < 2:
                    deadline = time.monotonic() + ROUND_S
                    while not _count(page).startswith(f"{i + 1} of 3 have ranked"):
                        assert time.monotonic() < deadline, _count(page)
                        page.wait_for_timeout(100)
            pages[0][0].screenshot(path=str(artifacts / f"crowd-round-{rnd}.png"))
            for page, _ in pages:
                wait_for_round(page, rnd + 1, timeout_s=ROUND_S)
            consensus, raters, crowd = _crowd_rows(db)
            assert len(consensus) == rnd + 1 and consensus[rnd].rater == "consensus"
            assert "ada" in raters and len(raters) == 3
            votes = consensus[rnd].meta["crowd"]["votes"]
            assert len(votes) == 3
            by_rater = {name: rows[rnd] for name, rows in raters.items()}
            logged = [by_rater[name] for name, _, _ in votes]
            # Each raw row is what its page showed (a top-k round logs the first k).
            for row, order in zip(logged, orders, strict=True):
                assert list(row.ranking) == order[: len(row.ranking)]
                assert row.round == rnd and not row.meta.get("late")
        consensus, raters, crowd = _crowd_rows(db)
        assert all(len(rows) == ROUNDS for rows in raters.values())
        with RoundLog(db) as log:
            assert [(r.ranking, r.ties) for r in consensus] == recompute(log, crowd)
        for _, errors in pages:
            assert errors == []
