from __future__ import annotations

from pathlib import Path

import pytest

from labkit.apps.control import control_app, goal
from labkit.store import RoundLog
from tests.apps.conftest import ranker, submit, texts


def test_the_control_app_ranks_the_best_three_and_shows_the_goal(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    from labkit.tasks.control import ControlTask

    task = ControlTask("CartPole-v1", horizon=20, max_frames=4, width=64)
    db = tmp_path / "rounds.sqlite"
    page = control_app(task=task, log=db)
    assert goal(task) in texts(page)
    w = ranker(page)
    assert w.m == 8 and w.k == 3 and w.mimes[0] == task.mime
    submit(page, [5, 0, 2])
    with RoundLog(db) as log:
        (sid,) = log.sessions()
        (row,) = log.rounds(sid)
    assert row.ranking == (5, 0, 2) and row.rater == "visitor"
