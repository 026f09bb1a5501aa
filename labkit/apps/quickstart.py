"""The quickstart app (``labkit app quickstart``): steer a point across a map by ranking.

A 2-D test function stands in for a model: each candidate is a point, drawn as a red dot on the
function's contour map, and the person puts the dots closest to the white cross first. The current
pick is shown as the *path* of the point so far, which is what this app teaches: the rankings
move the point, round after round, without a number ever being given.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets
import torch

from labkit.apps._view import AppView, limit_threads
from labkit.defaults import make_optimizer
from labkit.session import Session
from labkit.tasks.functions import FunctionTask

__all__ = ["PathMap", "quickstart_app"]

INSTRUCTIONS = (
    "Drag the maps into order, the red dot closest to the white cross first, then press "
    "Submit ranking. Your picks move the point; the path on the right shows where it went."
)


class PathMap:
    """The path of a session's point over the task's contour map, as PNG bytes.

    The contours are drawn once; each call only moves the line. Call it as an
    :data:`~labkit.apps._view.IncumbentView` (``path_map(session) -> (png, "image/png")``): the
    path is rebuilt from the session's rounds, so an undo shortens it.
    """

    def __init__(self, task: FunctionTask, *, px: int = 320, grid: int = 120) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if task.d != 2:
            raise ValueError(f"a path map needs a 2-D task; this one has d={task.d}")
        self.task = task
        (x_lo, x_hi), (y_lo, y_hi) = task.box
        gx, gy = torch.linspace(x_lo, x_hi, grid), torch.linspace(y_lo, y_hi, grid)
        YY, XX = torch.meshgrid(gy, gx, indexing="ij")
        F = task.score(torch.stack([XX.reshape(-1), YY.reshape(-1)], dim=1)).reshape(XX.shape)
        self._fig = Figure(figsize=(px / 100, px / 100), dpi=100)
        FigureCanvasAgg(self._fig)
        ax = self._fig.add_subplot()
        # log1p: the valley's shape stays visible next to the large values at the box's edges.
        ax.contourf(XX.numpy(), YY.numpy(), torch.log1p(F - F.min()).numpy(), levels=16)
        opt = task.optimum()
        ax.plot([float(opt[0])], [float(opt[1])], marker="x", color="white", ms=8, mew=2)
        (self._line,) = ax.plot([], [], "o-", color="tab:red", ms=3, lw=1.5)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_title("the path of the point", fontsize=9)
        self._fig.tight_layout()
        self._path: dict[int, torch.Tensor] = {}  # rounds ranked -> x after them
        self._session: Session | None = None

    def __call__(self, session: Session) -> tuple[bytes, str]:
        if session is not self._session:
            self._session, self._path = session, {}
        # x after each round it was called for (the view calls only when x moved, or after an
        # undo): an undo drops the rounds past the session's, so the path shortens with it.
        for r in [r for r in self._path if r > session.round]:
            del self._path[r]
        x = session.optimizer.x.detach().cpu().clone()
        last = self._path[max(self._path)] if self._path else None
        if last is None or not torch.equal(last, x):  # a point where x moved, never twice
            self._path[session.round] = x
        path = [self._path[r] for r in sorted(self._path)]
        P = torch.stack(path).numpy()
        self._line.set_data(P[:, 0], P[:, 1])
        buf = io.BytesIO()
        self._fig.savefig(buf, format="png")
        return buf.getvalue(), "image/png"


def quickstart_app(*, function: str = "sphere", tile_px: int = 128, log: Any = None) -> AppView:
    """The quickstart app's page: rank maps with a dot, watch the path; "Start over" restarts."""
    limit_threads()
    task = FunctionTask(function, image_size=tile_px)
    path_map = PathMap(task)
    restart = ipywidgets.Button(description="Start over")
    view = AppView(
        title="Steer a point by ranking",
        instructions=INSTRUCTIONS,
        controls=[restart],
        tile_px=tile_px,
        incumbent_px=320,
        strip=False,  # the path map already shows every pick
    )

    def new_session() -> Session:
        opt = make_optimizer(task, task.x0(seed=0))
        return Session(opt, task=task, log=log, name="app-quickstart", rater="visitor")

    restart.on_click(lambda _: view.start(new_session, incumbent=path_map))
    view.start(new_session, incumbent=path_map)
    return view
