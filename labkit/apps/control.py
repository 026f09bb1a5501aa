"""The control app (``labkit app control``): steer a policy by ranking its rollouts.

A linear policy ``a = W o + b`` drives a simulated body (MuJoCo's HalfCheetah when ``mujoco`` is
installed, else CartPole). Each round shows 8 rollouts of slightly different policies as
animations; the person ranks the best 3 by the goal printed above them, and the current policy's
rollout is shown large. The lesson behind it is ``notebooks/control.ipynb``.
"""

from __future__ import annotations

from typing import Any

import ipywidgets

from labkit.apps._view import AppView, limit_threads
from labkit.defaults import make_optimizer
from labkit.session import Session

__all__ = ["control_app", "control_task", "goal"]

#: Tile size of a rollout in the ranking widget: the width ControlTask draws by default.
TILE_PX = 192


def control_task(*, horizon: int = 150, seed: int = 0) -> Any:
    """HalfCheetah-v5 with MuJoCo installed (``pip install 'labkit[mujoco]'``), else CartPole."""
    from labkit.tasks.control import ControlTask

    return ControlTask(_env_id(), horizon=horizon, seed=seed)


def _env_id() -> str:
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return "CartPole-v1"
    return "HalfCheetah-v5"


def goal(task: Any) -> str:
    """What the person is asked to look for in the rollouts of ``task``."""
    if task.env_id.startswith("HalfCheetah"):
        return "runs forward (to the right) the farthest"
    if task.env_id.startswith("CartPole"):
        return "keeps the pole up the longest"
    return "does best at the task"


def control_app(*, task: Any = None, log: Any = None) -> AppView:
    """The control app's page; ``task`` shares a :class:`~labkit.tasks.control.ControlTask`."""
    limit_threads()
    task = task if task is not None else control_task()
    restart = ipywidgets.Button(description="Start over")
    view = AppView(
        title="Steer a policy by ranking its rollouts",
        instructions=(
            f"Goal: the policy that {goal(task)}. Drag the rollouts into order, best first, "
            f"then press Submit ranking."
        ),
        controls=[restart],
        tile_px=TILE_PX,
        incumbent_px=2 * TILE_PX,
    )

    def new_session() -> Session:
        opt = make_optimizer(task, task.x0())
        return Session(opt, task=task, log=log, name="app-control", rater="visitor")

    restart.on_click(lambda _: view.start(new_session))
    view.start(new_session)
    return view
