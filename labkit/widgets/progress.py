"""The live progress plot: one plotly ``FigureWidget`` updated in place, round after round.

Four panels share the round axis:

* **score** — the judge's score or the objective of the incumbent, when a task knows one, with
  the best so far (a dashed line);
* **step** — the step the optimizer took (η for a plain round, η·2^−i for the line-search winner,
  0 when the incumbent stayed);
* **agreement** — the cosine between the moves of x caused by consecutive rankings: near +1 the
  person keeps pushing the same way, near 0 the rankings look like noise to the optimizer;
* **pace** — rounds per minute over the last few rounds (how fast the person ranks).

For image tasks a strip of the incumbent's thumbnails over rounds sits below the figure. The same
data export to a static matplotlib figure for reports (:meth:`ProgressPlot.to_matplotlib`).

Updates go through ``batch_update`` on the existing traces, never a redraw (house style 8).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["ProgressPlot"]

_PANELS = ("score", "step", "agreement", "rounds / min")
# Rounds per minute is a moving rate over this many rounds, so one slow round does not dominate.
_PACE_WINDOW = 5


@dataclass
class _History:
    rounds: list[int] = field(default_factory=list)
    score: list[float | None] = field(default_factory=list)
    best: list[float | None] = field(default_factory=list)
    step: list[float | None] = field(default_factory=list)
    agreement: list[float | None] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    pace: list[float | None] = field(default_factory=list)


def _finite_or_none(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    if math.isnan(v):
        return None
    if math.isinf(v):
        raise ValueError(f"{name} must be finite or None; got {value!r}")
    return v


class ProgressPlot:
    """Live progress of a ranking session.

    Args:
        title: shown above the figure.
        score_label: what the score is ("p(digit = 3)", "objective", …).
        maximize: whether a higher score is better (sets the best-so-far rule).
        thumbnails: how many incumbent thumbnails the strip keeps (0: no strip).
        height: figure height in px.
    """

    def __init__(
        self,
        *,
        title: str = "progress",
        score_label: str = "score",
        maximize: bool = True,
        thumbnails: int = 12,
        height: int = 360,
    ) -> None:
        if thumbnails < 0:
            raise ValueError(f"thumbnails must be >= 0; got {thumbnails}")
        self.maximize = maximize
        self.max_thumbnails = thumbnails
        self.history = _History()
        base = make_subplots(rows=2, cols=2, subplot_titles=_PANELS, horizontal_spacing=0.12)
        base.update_layout(
            title=title,
            height=height,
            margin={"l": 50, "r": 20, "t": 60, "b": 40},
            showlegend=False,
        )
        # Traces and axes go on the plain figure *before* it becomes a FigureWidget: a widget
        # shown inside a VBox never re-sends its full state, so traces added afterwards would
        # never reach the page. Trace order is fixed (score, best, step, agreement, pace);
        # updates address them by index.
        base.add_scatter(x=[], y=[], mode="lines+markers", name=score_label, row=1, col=1)
        base.add_scatter(
            x=[], y=[], mode="lines", name="best so far", line={"dash": "dash"}, row=1, col=1
        )
        base.add_scatter(x=[], y=[], mode="lines+markers", name="step", row=1, col=2)
        base.add_scatter(x=[], y=[], mode="markers", name="agreement", row=2, col=1)
        base.add_scatter(x=[], y=[], mode="lines", name="rounds/min", row=2, col=2)
        base.update_yaxes(title_text=score_label, row=1, col=1)
        base.update_yaxes(range=[-1.05, 1.05], row=2, col=1)
        base.update_xaxes(title_text="round", row=2)
        self.figure = go.FigureWidget(base)
        self._strip = ipywidgets.HBox(layout=ipywidgets.Layout(overflow="auto hidden"))
        self._strip_rounds: list[int] = []  # the round each thumbnail in the strip shows
        children: list[ipywidgets.Widget] = [self.figure]
        if thumbnails:
            children.append(self._strip)
        self.widget = ipywidgets.VBox(children)

    # -- updates ------------------------------------------------------------------------------
    def update(
        self,
        round: int,
        *,
        time: float,
        score: float | None = None,
        step: float | None = None,
        agreement: float | None = None,
        thumbnail: bytes | None = None,
    ) -> None:
        """Append one round (``time`` in seconds, e.g. its log's epoch time) and move the plot.

        A time earlier than the previous round's is taken as the previous one: the session
        passes wall-clock times, which a clock adjustment (or a log written on another
        machine) can step backwards, and a round must never be refused for that.
        """
        h = self.history
        score = _finite_or_none("score", score)
        step = _finite_or_none("step", step)
        agreement = _finite_or_none("agreement", agreement)
        if agreement is not None and not -1.0 - 1e-6 <= agreement <= 1.0 + 1e-6:
            raise ValueError(f"agreement is a cosine in [-1, 1]; got {agreement}")
        if isinstance(time, bool) or not isinstance(time, numbers.Real):
            raise ValueError(f"time must be a number of seconds; got {time!r}")
        time = float(time)
        if not math.isfinite(time):
            raise ValueError(f"time must be a finite number of seconds; got {time!r}")
        if h.time:
            time = max(time, h.time[-1])
        prev_best = next((b for b in reversed(h.best) if b is not None), None)
        if score is None:
            best = prev_best
        elif prev_best is None:
            best = score
        else:
            best = max(score, prev_best) if self.maximize else min(score, prev_best)
        h.rounds.append(int(round))
        h.score.append(score)
        h.best.append(best)
        h.step.append(step)
        h.agreement.append(agreement)
        h.time.append(float(time))
        h.pace.append(self._pace())
        self._redraw_traces()
        if thumbnail is not None and self.max_thumbnails:
            self._add_thumbnail(int(round), thumbnail)

    def truncate(self, n_rounds: int) -> None:
        """Keep only the first ``n_rounds`` points (after an undo)."""
        h = self.history
        for name in ("rounds", "score", "best", "step", "agreement", "time", "pace"):
            del getattr(h, name)[n_rounds:]
        self._redraw_traces()
        kept = [
            (r, c)
            for r, c in zip(self._strip_rounds, self._strip.children, strict=True)
            if r in h.rounds
        ]
        self._strip_rounds = [r for r, _ in kept]
        self._strip.children = tuple(c for _, c in kept)

    def _pace(self) -> float | None:
        t = self.history.time
        if len(t) < 2:
            return None
        window = t[-(_PACE_WINDOW + 1) :]
        elapsed = window[-1] - window[0]
        return 60.0 * (len(window) - 1) / elapsed if elapsed > 0 else None

    def _redraw_traces(self) -> None:
        h = self.history
        with self.figure.batch_update():
            for trace, ys in zip(
                self.figure.data, (h.score, h.best, h.step, h.agreement, h.pace), strict=True
            ):
                trace.x = list(h.rounds)
                trace.y = list(ys)

    def _add_thumbnail(self, round: int, png: bytes) -> None:
        img = ipywidgets.Image(
            value=png, format="png", layout=ipywidgets.Layout(width="48px", height="48px")
        )
        box = ipywidgets.VBox(
            [img, ipywidgets.HTML(f"<small>round {round}</small>")],
            layout=ipywidgets.Layout(align_items="center", margin="0 4px"),
        )
        n = self.max_thumbnails
        self._strip_rounds = [*self._strip_rounds, round][-n:]
        self._strip.children = (*self._strip.children, box)[-n:]

    # -- export -------------------------------------------------------------------------------
    def to_matplotlib(self, path: str | None = None, *, dpi: int = 120) -> Any:
        """The same four panels as a static matplotlib figure; saved to ``path`` when given."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        h = self.history
        fig, axes = plt.subplots(2, 2, figsize=(9, 5.5), sharex=True)
        series: Sequence[tuple[Any, list[float | None], str]] = (
            (axes[0, 0], h.score, "o-"),
            (axes[0, 1], h.step, "o-"),
            (axes[1, 0], h.agreement, "o"),
            (axes[1, 1], h.pace, "-"),
        )
        for (ax, ys, style), name in zip(series, _PANELS, strict=True):
            ax.plot(h.rounds, [math.nan if y is None else y for y in ys], style, ms=3)
            ax.set_title(name)
        axes[0, 0].plot(h.rounds, [math.nan if b is None else b for b in h.best], "--")
        axes[1, 0].set_ylim(-1.05, 1.05)
        for ax in axes[1]:
            ax.set_xlabel("round")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=dpi)
            plt.close(fig)
        return fig
