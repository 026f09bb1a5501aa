from __future__ import annotations

from pathlib import Path

import pytest

from labkit.apps.control import control_app, goal
from labkit.roundlog import RoundLog
from tests.apps.conftest import ranker, submit, texts


def test_the_control_app_ranks_its_rollouts_and_shows_the_goal(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    from labkit.tasks.control import ControlTask

    task = ControlTask("CartPole-v1", horizon=20, max_frames=4, width=64)
    db = tmp_path / "rounds.sqlite"
    page = control_app(task=task, log=db)
    assert goal(task) in texts(page)
    w = ranker(page)
    # The default for a policy (CMA-ES told the ranks) asks for a full ranking of the 8.
    assert w.m == 8 and w.k in (None, 0, 8) and w.mimes[0] == task.mime
    submit(page, [5, 0, 2, 1, 3, 4, 7, 6])
    with RoundLog(db) as log:
        (sid,) = log.sessions()
        (row,) = log.rounds(sid)
    assert row.ranking == (5, 0, 2, 1, 3, 4, 7, 6) and row.rater == "visitor"
