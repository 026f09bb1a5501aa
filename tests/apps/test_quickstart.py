from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labkit.apps.quickstart import PathMap, quickstart_app
from labkit.roundlog import RoundLog
from labkit.tasks.functions import FunctionTask
from tests.apps.conftest import ranker, submit, walk


def _red_pixels(png: bytes) -> int:
    """How many pixels of the map are the path's red."""
    import io

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((a[..., 0] > 180) & (a[..., 1] < 110) & (a[..., 2] < 90)).sum())


def test_the_path_grows_with_each_round_and_an_undo_shortens_it(tmp_path: Path) -> None:
    page = quickstart_app(log=tmp_path / "rounds.sqlite", tile_px=64)
    import ipywidgets

    pick = next(w for w in walk(page) if isinstance(w, ipywidgets.Image) and w.width == "320")
    red = [_red_pixels(pick.value)]
    (x_lo, x_hi), (y_lo, y_hi) = page.session.task.box
    for _ in range(4):
        w = ranker(page)
        # The default for a map alternates gradient rounds (rank all) and line-search rounds
        # (pick one). There, pick the longest step that stays on the map, so the path grows
        # visibly whatever the (OS-drawn) seed of the session.
        if w.k == 1:
            X = page.session.optimizer.ask()
            on_map = [
                i
                for i in range(2, X.shape[0])
                if x_lo < float(X[i, 0]) < x_hi and y_lo < float(X[i, 1]) < y_hi
            ]
            submit(page, [on_map[0]])
        else:
            submit(page)
        red.append(_red_pixels(pick.value))
    assert red[0] < red[2] < red[4], red  # more path on the map after more moves
    w = ranker(page)
    w._on_frontend_msg(w, {"event": "undo", "round": w.round_id}, [])
    assert _red_pixels(pick.value) == red[3]
    # The path is the history: no strip of small path maps beside it.
    assert page.strip.children == ()


def test_start_over_is_a_new_session_in_the_log(tmp_path: Path) -> None:
    db = tmp_path / "rounds.sqlite"
    page = quickstart_app(log=db, tile_px=64)
    submit(page)
    import ipywidgets

    button = next(w for w in walk(page) if isinstance(w, ipywidgets.Button))
    button.click()
    assert ranker(page).round_id == 0
    with RoundLog(db) as log:
        sessions = log.sessions()
        assert [len(log.rounds(s)) for s in sessions] == [1, 0]
        assert {log.session_meta(s)["name"] for s in sessions} == {"app-quickstart"}


def test_a_path_map_needs_two_dimensions() -> None:
    with pytest.raises(ValueError, match="2-D"):
        PathMap(FunctionTask("sphere", d=3))
