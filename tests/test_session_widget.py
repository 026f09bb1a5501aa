"""A session driven through its widget, the way the browser drives it (by assigning traits)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch

from labkit.judges import TopKJudge
from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.roundlog import RoundLog
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


def test_ties_and_none_better_from_the_page_reach_the_log_and_the_optimizer(
    tmp_path: Path,
) -> None:
    s = _session(tmp_path, line_search=2)
    s.show()
    w = s._widget
    w.submitted = {"round": 0, "ranking": [2, 0], "ties": [1]}  # a gradient round, k=2
    assert w.round_id == 1 and w.incumbent == 0 and w.k == 1  # a line-search round
    x = s.optimizer.x.clone()
    w.submitted = {"round": 1, "ranking": [0], "none_better": True}
    assert torch.equal(s.optimizer.x, x) and w.round_id == 2 and w.incumbent is None
    rows = s.log.rounds(s.session_id)
    assert [(r.ranking, r.ties, r.answer) for r in rows] == [
        ((2, 0), (1,), "ranking"),
        ((0,), (), "none_better"),
    ]
    # No current candidate in a gradient round: the page cannot answer "none is better".
    with pytest.raises(Exception):  # noqa: B017 - traitlets raises TraitError
        w.submitted = {"round": 2, "ranking": [0], "none_better": True}
    assert "shows no current candidate" in w.error and len(s.log.rounds(s.session_id)) == 2
    resumed = Session.resume(
        ZORankSGD(torch.tensor([1.0, 1.0]), lr=0.3, mu=0.2, m=5, k=2, seed=1, line_search=2),
        log=s.log,
        session_id=s.session_id,
    )
    assert torch.equal(resumed.optimizer.x, s.optimizer.x)
    assert torch.equal(resumed.candidates(), s.candidates())


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


def _page_submits(w: Any, round_id: int, ranking: list[int]) -> None:
    """The page's state update, through the widget protocol (whose handler logs exceptions)."""
    state = {"submitted": {"round": round_id, "ranking": ranking}}
    w._handle_msg({"content": {"data": {"method": "update", "state": state}}, "buffers": []})


def _sent(w: Any) -> list[dict[str, Any]]:
    """Start recording the states the kernel sends to the page (the widget's ``_send``)."""
    sent: list[dict[str, Any]] = []
    w._send = lambda msg, buffers=None: sent.append(dict(msg["state"]))
    return sent


def test_the_page_hears_accepted_after_the_commit_and_before_the_optimizer(
    tmp_path: Path,
) -> None:
    s = _session(tmp_path)
    s.show()
    w = s._widget
    sent = _sent(w)
    events: list[str] = []
    append, tell = s.log.append, s.optimizer.tell

    def logged_append(*args: Any, **kwargs: Any) -> Any:
        events.append(f"append starts; page told accepted: {_accepted(sent)}")
        row = append(*args, **kwargs)
        events.append(f"append committed; page told accepted: {_accepted(sent)}")
        return row

    def recorded_tell(ranking: Any, *, ties: Any = None) -> None:
        events.append(f"tell; page told accepted: {_accepted(sent)}")
        tell(ranking, ties=ties)

    s.log.append = logged_append  # type: ignore[method-assign]
    s.optimizer.tell = recorded_tell  # type: ignore[method-assign]
    _page_submits(w, 0, [3, 1])
    assert events == [
        "append starts; page told accepted: []",
        "append committed; page told accepted: []",
        "tell; page told accepted: [0]",
    ]
    # Meanwhile the page was busy saving, and then got the next round.
    assert {"busy": True, "status": "saving the ranking of round 0…"} in sent
    assert w.round_id == 1 and not w.busy and w.error == ""


def _accepted(sent: list[dict[str, Any]]) -> list[int]:
    return [st["accepted_round"] for st in sent if st.get("accepted_round") is not None]


def test_a_ranking_the_log_could_not_lock_for_is_kept_on_the_page(tmp_path: Path) -> None:
    """The append times out waiting for another writer: not taken, the page says why and the
    same ranking goes through once the lock is free."""
    path = tmp_path / "log.sqlite"
    opt = ZORankSGD(torch.tensor([1.0, 1.0]), lr=0.3, mu=0.2, m=5, k=2, seed=1)
    s = Session(opt, task=FunctionTask("sphere"), log=RoundLog(path, busy_timeout=0.05))
    s.show()
    w = s._widget
    sent = _sent(w)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    _page_submits(w, 0, [3, 1])
    assert "was not taken: OperationalError: database is locked" in w.error
    assert _accepted(sent) == [] and w.accepted_round is None and w.submitted == {}
    assert not w.busy and s.round == 0
    other.execute("ROLLBACK")
    other.close()
    _page_submits(w, 0, [3, 1])
    assert [r.ranking for r in s.log.rounds(s.session_id)] == [(3, 1)]
    assert _accepted(sent) == [0] and w.round_id == 1 and w.error == ""


def test_after_an_undo_that_failed_to_show_its_round_nothing_is_dropped(tmp_path: Path) -> None:
    """The undo is done but its round cannot be shown: the page, a round ahead, is refused
    loudly (never told 'accepted' for a ranking dropped), catches up, and one press of Undo
    never undoes two rounds."""
    s = _session(tmp_path)
    s.show()
    w = s._widget
    _page_submits(w, 0, [3, 1])
    _page_submits(w, 1, [0, 2])
    assert s.round == 2 and w.round_id == 2
    render = s.task.render  # type: ignore[union-attr]

    def broken_render(X: torch.Tensor) -> list[bytes]:
        raise RuntimeError("renderer crashed")

    s.task.render = broken_render  # type: ignore[method-assign, union-attr]
    with pytest.raises(RuntimeError, match="renderer crashed"):
        w._on_frontend_msg(w, {"event": "undo", "round": 2}, [])
    assert w.error == "undo failed: RuntimeError: renderer crashed"
    assert s.round == 1 and w.round_id == 2 and not w.busy  # undone, but the page is behind
    # Undo pressed again on the same page: refused (the page is not where the session is).
    with pytest.raises(ValueError, match="showing round 1 failed again: RuntimeError"):
        w._on_frontend_msg(w, {"event": "undo", "round": 2}, [])
    assert "the page shows round 2, but the session is at round 1" in w.error
    assert "nothing was undone" in w.error and s.round == 1
    # A ranking of the round on screen: not taken, said so, never silently dropped.
    sent = _sent(w)
    _page_submits(w, 2, [4, 0])
    assert "round 2 was not taken: the page shows round 2, but the session is at round 1" in (
        w.error
    )
    assert _accepted(sent) == [] and s.round == 1
    assert [r.ranking for r in s.log.rounds(s.session_id)] == [(3, 1)]
    # Once rendering works again the page catches up and ranks the session's round.
    s.task.render = render  # type: ignore[method-assign, union-attr]
    _page_submits(w, 2, [4, 0])
    assert "round 1 is on screen now" in w.error and w.round_id == 1
    _page_submits(w, 1, [4, 0])
    assert [r.ranking for r in s.log.rounds(s.session_id)] == [(3, 1), (4, 0)]
    assert _accepted(sent) == [1] and w.round_id == 2 and w.error == ""


def test_undo_of_a_round_taken_whose_next_round_failed_to_show(tmp_path: Path) -> None:
    """The page shows round 0 as accepted (round 1 could not be shown): Undo takes back round 0."""
    s = _session(tmp_path)
    s.show()
    w = s._widget
    render = s.task.render  # type: ignore[union-attr]

    def broken_render(X: torch.Tensor) -> list[bytes]:
        raise RuntimeError("renderer crashed")

    s.task.render = broken_render  # type: ignore[method-assign, union-attr]
    with pytest.raises(RuntimeError):
        w.submitted = {"round": 0, "ranking": [3, 1]}
    assert w.accepted_round == 0 and w.round_id == 0 and s.round == 1 and w.status == ""
    s.task.render = render  # type: ignore[method-assign, union-attr]
    w._on_frontend_msg(w, {"event": "undo", "round": 0}, [])
    assert s.round == 0 and w.round_id == 0 and w.accepted_round is None and w.error == ""
    rows = s.log.rounds(s.session_id, include_undone=True)
    assert [(r.ranking, r.undone) for r in rows] == [((3, 1), True)]


def test_a_judged_session_shows_its_plot_only(tmp_path: Path) -> None:
    """A visitor must not rank a machine judge's session (their rankings would say 'judge')."""
    opt = ZORankSGD(torch.tensor([1.0, 1.0]), lr=0.3, mu=0.2, m=5, k=2, seed=1)
    task = FunctionTask("sphere")
    auto = Session(
        opt, task=task, judge=TopKJudge(task.score, k=2), log=tmp_path / "l.sqlite", rater="judge"
    )
    box = auto.show()
    assert auto._widget is None and box.children == (auto._plot.widget,)
    with pytest.raises(ValueError, match="ranked by its machine judge"):
        auto.show(rank=True)
    with pytest.raises(ValueError, match="for the ranking widget"):
        auto.show(size=100)
    auto.run(2, progress=False)
    assert auto._plot.history.rounds == [0, 1]
    # Any session can be shown without the widget; showing nothing is refused.
    s = _session(tmp_path)
    assert s.show(rank=False).children == (s._plot.widget,) and s._widget is None
    with pytest.raises(ValueError, match="would show nothing"):
        s.show(rank=False, plot=False)
    assert s.show(plot=False).children == (s._widget,)
