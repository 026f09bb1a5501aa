from __future__ import annotations

from pathlib import Path

import ipywidgets
import pytest
import torch

from labkit.apps._view import AppView, limit_threads, short_error
from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.roundlog import RoundLog
from labkit.session import Session
from labkit.tasks.functions import FunctionTask
from tests.apps.conftest import ranker, submit, texts


def _view_and_session(tmp_path: Path, **view_kw: object) -> tuple[AppView, Session]:
    task = FunctionTask("sphere", image_size=64)
    opt = ZORankSGD(task.x0(), lr=0.3, mu=0.5, m=4, seed=0)
    session = Session(opt, task=task, log=tmp_path / "log.sqlite", name="app-test", rater="v")
    view = AppView(title="Title <b>", instructions="Do this.", tile_px=64, **view_kw)
    view.show_session(session)
    return view, session


def test_the_page_holds_title_instructions_one_ranker_and_the_current_pick(
    tmp_path: Path,
) -> None:
    view, session = _view_and_session(tmp_path)
    assert "Title &lt;b&gt;" in texts(view.widget)  # plain text, escaped
    assert "Do this." in texts(view.widget)
    assert ranker(view.widget) is session._widget
    assert view.incumbent.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "0 rounds ranked" in view.progress.value
    # The lesson's plot is not on an app page.
    assert session._plot is None


def test_a_round_updates_the_pick_the_progress_and_the_strip_and_undo_takes_it_back(
    tmp_path: Path,
) -> None:
    view, session = _view_and_session(tmp_path)
    first = view.incumbent.value
    submit(view.widget, [3, 2, 1, 0])
    assert view.incumbent.value != first
    assert "1 round ranked · your pick changed 1×" in view.progress.value
    shown = [t for t in view._thumbs if t.layout.display != "none"]
    assert [t.value for t in shown] == [view.incumbent.value]
    # Undo through the page: the pick, the progress and the strip go back.
    w = ranker(view.widget)
    w._on_frontend_msg(w, {"event": "undo", "round": w.round_id}, [])
    assert session.round == 0 and view.incumbent.value == first
    assert "0 rounds ranked" in view.progress.value
    assert all(t.layout.display == "none" for t in view._thumbs)


def test_the_strip_keeps_the_last_six_picks(tmp_path: Path) -> None:
    view, _ = _view_and_session(tmp_path)
    for _ in range(8):
        submit(view.widget)
    shown = [t for t in view._thumbs if t.layout.display != "none"]
    assert len(shown) == 6 and shown[-1].value == view.incumbent.value
    assert "8 rounds ranked" in view.progress.value


def test_a_failing_pick_view_is_one_short_line_and_the_round_stays_taken(
    tmp_path: Path,
) -> None:
    view, session = _view_and_session(tmp_path)
    calls = []

    def broken(s: Session) -> tuple[bytes, str]:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("/secret/path/of/the/server " + "x" * 500)
        return b"\x89PNG\r\n\x1a\n", "image/png"

    view.show_session(session, incumbent=broken)
    submit(view.widget)
    with RoundLog(tmp_path / "log.sqlite") as log:
        assert len(log.rounds(session.session_id)) == 1
    assert "OSError" in view.message.value
    assert len(view.message.value) < 400  # cut to a sane length, not the 500 characters


def test_short_error_is_one_line_and_bounded() -> None:
    assert short_error(ValueError("a\nb")) == "ValueError: a"
    assert len(short_error(RuntimeError("y" * 1000))) == 160
    assert short_error(KeyError()) == "KeyError"


def test_bad_arguments_are_refused_with_their_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="title"):
        AppView(title="", instructions="x")
    view = AppView(title="t", instructions="i")
    with pytest.raises(ValueError, match="Session"):
        view.show_session(object())  # type: ignore[arg-type]
    opt = ZORankSGD(torch.zeros(2), lr=0.1, mu=0.1, m=4, seed=0)
    with pytest.raises(ValueError, match="task"):
        view.show_session(Session(opt, log=tmp_path / "l.sqlite"))


def test_limit_threads_reads_labkit_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_THREADS", "1")
    assert limit_threads() == 1 and torch.get_num_threads() == 1
    for bad in ("0", "two"):
        monkeypatch.setenv("LABKIT_THREADS", bad)
        with pytest.raises(ValueError, match="LABKIT_THREADS"):
            limit_threads()


def test_a_new_session_replaces_the_old_one_and_the_old_one_no_longer_drives_the_view(
    tmp_path: Path,
) -> None:
    view, old = _view_and_session(tmp_path)
    task = old.task
    new = Session(
        ZORankSGD(task.x0(), lr=0.3, mu=0.5, m=4, seed=1), task=task, log=old.log, name="app-2"
    )
    view.show_session(new)
    assert isinstance(view.round_area.children[0], ipywidgets.VBox)
    assert ranker(view.widget) is new._widget
    old.submit([0, 1, 2, 3])  # e.g. a judge on the old session: the page must not move
    assert "0 rounds ranked" in view.progress.value


def test_start_shows_a_new_session_or_tells_why_not_in_one_line(tmp_path: Path) -> None:
    view, old = _view_and_session(tmp_path)
    task = old.task

    def broken() -> Session:
        raise RuntimeError("/home/someone/secret\nTraceback ...")

    assert view.start(broken) is None
    assert view.session is old and "RuntimeError: /home/someone/secret" in view.message.value
    assert "Traceback" not in view.message.value
    opt = ZORankSGD(task.x0(), lr=0.3, mu=0.5, m=4, seed=2)
    new = view.start(lambda: Session(opt, task=task, log=old.log, name="app-3"))
    assert new is view.session and ranker(view.widget) is new._widget
    assert view.message.value == ""
