from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labkit.apps.digits import digits_app, pipeline_app
from labkit.roundlog import RoundLog
from tests.apps.conftest import ranker, submit, walk
from tests.tasks.test_diffusion import tiny_pipe  # noqa: F401  (the fixture)


@pytest.fixture(scope="module")
def shared() -> dict[str, Any]:
    """One model and classifier for every test here (as a lesson shares its own)."""
    from labkit.models.digits import DigitClassifier, load_digits_model

    return {"model": load_digits_model(), "classifier": DigitClassifier()}


def _dropdown(page: Any) -> Any:
    import ipywidgets

    return next(w for w in walk(page) if isinstance(w, ipywidgets.Dropdown))


def test_every_round_leads_with_the_current_pick_and_answers_are_logged_as_the_visitor(
    tmp_path: Path, shared: dict[str, Any]
) -> None:
    db = tmp_path / "rounds.sqlite"
    page = digits_app(log=db, tile_px=64, **shared)
    w = ranker(page)
    # The default for latents: the current pick in row 0 of every round, a full ranking of 8.
    assert w.m == 8 and w.k in (None, 0, 8) and w.round_id == 0 and w.incumbent == 0
    submit(page, [3, 0, 1, 2, 4, 5, 6, 7])
    assert w.round_id == 1 and w.incumbent == 0
    # "=" between the first two, then "None is better than the current one".
    w.set_state({"submitted": {"round": 1, "ranking": [2, 5, 0, 1, 3, 4, 6, 7], "ties": [1]}})
    assert w.error == "", w.error
    w.set_state({"submitted": {"round": 2, "ranking": [0], "none_better": True}})
    assert w.error == "", w.error
    with RoundLog(db) as log:
        (sid,) = log.sessions()
        meta = log.session_meta(sid)
        rows = log.rounds(sid)
    assert meta["name"] == "app-digits"
    assert [r.rater for r in rows] == ["visitor"] * 3
    assert [r.kind for r in rows] == ["preference"] * 3
    assert [r.ties for r in rows] == [(), (1,), ()]
    assert [r.answer for r in rows] == ["ranking", "ranking", "none_better"]
    assert rows[2].ranking == (0,)


def test_choosing_what_the_model_draws_starts_a_new_conditional_session(
    tmp_path: Path, shared: dict[str, Any]
) -> None:
    db = tmp_path / "rounds.sqlite"
    page = digits_app(log=db, tile_px=64, **shared)
    first = ranker(page)
    _dropdown(page).value = 3
    second = ranker(page)
    assert second is not first and second.round_id == 0
    with RoundLog(db) as log:
        metas = [log.session_meta(s) for s in log.sessions()]
    assert "unconditional" in metas[0]["task"] and "condition=3" in metas[1]["task"]
    assert metas[0]["seed"] != metas[1]["seed"] or metas[0] != metas[1]


def test_the_pipeline_app_needs_a_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_PIPELINE", raising=False)
    with pytest.raises(ValueError, match="LABKIT_PIPELINE"):
        pipeline_app()


def test_the_pipeline_app_steers_a_local_pipeline(
    tmp_path: Path,
    tiny_pipe: Any,  # noqa: F811
) -> None:
    db = tmp_path / "rounds.sqlite"
    page = pipeline_app(tiny_pipe, prompt="a fox", steps=2, tile_px=64, log=db)
    w = ranker(page)
    assert w.m == 8 and w.round_id == 0
    submit(page)
    with RoundLog(db) as log:
        (sid,) = log.sessions()
        assert log.session_meta(sid)["name"] == "app-pipeline"
        assert len(log.rounds(sid)) == 1
