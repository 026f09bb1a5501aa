"""The live progress plot: in-place updates, best-so-far, pace, undo, static export."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from labkit.widgets.progress import ProgressPlot


def test_updates_traces_in_place_with_best_so_far() -> None:
    plot = ProgressPlot(maximize=True)
    fig = plot.figure
    traces_before = list(fig.data)
    for r, (s, t) in enumerate([(0.2, 0.0), (0.5, 6.0), (0.3, 12.0)]):
        plot.update(r, time=t, score=s, step=0.1, agreement=None if r == 0 else 0.5)
    assert list(fig.data) == traces_before  # same trace objects: updated, not redrawn
    score, best, step, agreement, pace = fig.data
    assert list(score.y) == [0.2, 0.5, 0.3]
    assert list(best.y) == [0.2, 0.5, 0.5]
    assert list(step.x) == [0, 1, 2]
    assert list(agreement.y) == [None, 0.5, 0.5]
    assert pace.y[0] is None and pace.y[-1] == pytest.approx(10.0)  # 2 rounds in 12 s


def test_minimizing_best_and_missing_scores() -> None:
    plot = ProgressPlot(maximize=False)
    plot.update(0, time=0, score=None)
    plot.update(1, time=1, score=3.0)
    plot.update(2, time=2, score=float("nan"))
    plot.update(3, time=3, score=1.0)
    assert plot.history.best == [None, 3.0, 3.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"score": math.inf}, "score"),
        ({"agreement": 1.5}, "agreement"),
        ({"step": -math.inf}, "step"),
    ],
)
def test_bad_values_are_refused(kwargs: dict, match: str) -> None:
    plot = ProgressPlot()
    with pytest.raises(ValueError, match=match):
        plot.update(0, time=0.0, **kwargs)
    assert plot.history.rounds == []


def test_a_clock_stepping_back_never_refuses_a_round() -> None:
    plot = ProgressPlot()
    plot.update(0, time=5.0)
    plot.update(1, time=4.0)  # the wall clock was adjusted between two rounds
    plot.update(2, time=35.0)
    assert plot.history.rounds == [0, 1, 2]
    assert plot.history.time == [5.0, 5.0, 35.0]
    assert plot.history.pace[-1] == pytest.approx(60.0 * 2 / 30.0)
    with pytest.raises(ValueError, match="time must be a finite number"):
        plot.update(3, time=float("nan"))
    assert plot.history.rounds == [0, 1, 2]


def test_thumbnail_strip_keeps_the_last_n_and_truncate_rolls_back() -> None:
    plot = ProgressPlot(thumbnails=3)
    png = b"\x89PNG\r\n\x1a\nfake"
    for r in range(5):
        plot.update(r, time=float(r), score=float(r), thumbnail=png)
    assert len(plot._strip.children) == 3
    assert plot._strip_rounds == [2, 3, 4]
    plot.truncate(3)
    assert plot.history.rounds == [0, 1, 2]
    assert list(plot.figure.data[0].y) == [0.0, 1.0, 2.0]
    assert plot._strip_rounds == [2]


def test_matplotlib_export_writes_a_png(tmp_path: Path) -> None:
    plot = ProgressPlot()
    for r in range(4):
        plot.update(r, time=10.0 * r, score=r**0.5, step=0.1, agreement=0.2)
    out = tmp_path / "progress.png"
    plot.to_matplotlib(str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
