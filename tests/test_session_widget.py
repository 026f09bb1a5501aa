"""A session driven through its widget, the way the browser drives it (by assigning traits)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.session import Session
from labkit.tasks.functions import FunctionTask


def _session(tmp_path: Path, line_search: int = 0) -> Session:
    opt = ZORankSGD(
        torch.tensor([1.0, 1.0]), lr=0.3, mu=0.2, m=5, k=2, seed=1, line_search=line_search
    )
    return Session(opt, task=FunctionTask("sphere"), log=tmp_path / "log.sqlite", rater="ada")


def test_show_renders_the_round_and_a_browser_submission_is_logged_then_told(
    tmp_path: Path,
) -> None:
    s = _session(tmp_path)
    box = s.show()
    w = s._widget
    assert box.children[0] is w and len(w.items) == 5 and w.k == 2 and w.round_id == 0
    assert all(item[:8] == b"\x89PNG\r\n\x1a\n" for item in w.items)
    x0 = s.optimizer.x.clone()
    w.submitted = {"round": 0, "ranking": [3, 1]}  # what the front end writes
    rows = s.log.rounds(s.session_id)
    assert [r.ranking for r in rows] == [(3, 1)] and rows[0].rater == "ada"
    assert not torch.equal(s.optimizer.x, x0)
    assert w.round_id == 1 and w.can_undo and not w.busy  # the next round is on screen
    assert s._plot.history.rounds == [0]


def test_malformed_and_stale_submissions_never_reach_the_log(tmp_path: Path) -> None:
    s = _session(tmp_path)
    s.show()
    w = s._widget
    for bad in (
        {"round": 0, "ranking": [3, 3]},
        {"round": 0, "ranking": [9, 1]},
        {"round": 0, "ranking": ["1", 2]},
        {"round": 7, "ranking": [0, 1]},
        {"ranking": [0, 1]},
    ):
        with pytest.raises(Exception):  # noqa: B017 - traitlets raises TraitError
            w.submitted = bad
        assert w.error
    assert s.log.rounds(s.session_id) == [] and s.round == 0


def test_undo_from_the_widget_rolls_back_and_shows_the_round_again(tmp_path: Path) -> None:
    s = _session(tmp_path)
    s.show()
    w = s._widget
    first_items = list(w.items)
    w.submitted = {"round": 0, "ranking": [0, 4]}
    assert s.round == 1
    w._on_frontend_msg(w, {"event": "undo", "round": 1}, [])
    assert s.round == 0 and w.round_id == 0 and list(w.items) == first_items
    assert not w.can_undo
    rows = s.log.rounds(s.session_id, include_undone=True)
    assert [(r.ranking, r.undone) for r in rows] == [((0, 4), True)]
    assert s._plot.history.rounds == []


def test_line_search_rounds_ask_for_the_winner_and_mark_the_incumbent(tmp_path: Path) -> None:
    s = _session(tmp_path, line_search=2)
    s.show()
    w = s._widget
    w.submitted = {"round": 0, "ranking": [2, 0]}
    assert w.k == 1 and w.incumbent == 0 and len(w.items) == 4
    w.submitted = {"round": 1, "ranking": [2]}
    assert [r.kind for r in s.log.rounds(s.session_id)] == ["gradient", "line_search"]


def test_a_submission_the_log_refused_can_be_made_again(tmp_path: Path) -> None:
    """Another Session on the same session id wrote round 0 first: this one's ranking is not
    taken, the page says so and may submit again (it is refused again, never lost silently)."""
    s = _session(tmp_path)
    s.show()
    w = s._widget
    other = Session.resume(
        ZORankSGD(torch.tensor([1.0, 1.0]), lr=0.3, mu=0.2, m=5, k=2, seed=1),
        log=s.log,
        session_id=s.session_id,
    )
    other.submit([0, 1])
    from labkit.widgets import NotTaken

    with pytest.raises(NotTaken):
        w.submitted = {"round": 0, "ranking": [3, 1]}
    assert "was not taken" in w.error and "live round 0" in w.error
    assert w.accepted_round is None and w.round_id == 0 and not w.can_undo
    assert [r.ranking for r in s.log.rounds(s.session_id)] == [(0, 1)]


def test_a_round_taken_whose_next_round_fails_to_render_stays_taken(tmp_path: Path) -> None:
    """Logged and told, then rendering the next round fails: the round must not look untaken
    (submitting it again would be ignored as stale), and Undo must reach it."""
    s = _session(tmp_path)
    s.show()
    w = s._widget

    def broken_render(X: torch.Tensor) -> list[bytes]:
        raise RuntimeError("renderer crashed")

    s.task.render = broken_render  # type: ignore[method-assign, union-attr]
    with pytest.raises(RuntimeError, match="renderer crashed"):
        w.submitted = {"round": 0, "ranking": [3, 1]}
    assert [r.ranking for r in s.log.rounds(s.session_id)] == [(3, 1)] and s.round == 1
    assert "was accepted, but handling it failed" in w.error
    assert w.accepted_round == 0 and w.can_undo
