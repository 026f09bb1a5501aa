"""What a person steers with: the one place that picks an optimizer and its scales for a task.

Apps and lessons call :func:`make_optimizer`; constants typed into notebooks are a smell. The
choice and its constants were tuned with ``labkit bench steer --split train`` (simulated people,
targets from the digits model's training split) and are reported on held-out targets in
docs/benchmarks.md ("Steering: rounds a person needs").
"""

from __future__ import annotations

import math
from typing import Any

from labkit._checks import integer
from labkit.optim.base import RankOptimizer, as_start_point

__all__ = ["make_optimizer", "task_scale"]


def task_scale(task: Any) -> float:
    """The typical size of one entry of a candidate of ``task``: what "a step of 1" means.

    * a task with a ``scale`` attribute: that;
    * latents of a diffusion model (``DigitsTask``, ``PipelineTask``): 1, the prior's standard
      deviation (x₀ ~ N(0, I)); a class or prompt offset is in units of its embedding's spread,
      so 1 there too;
    * ``FunctionTask``: 1/12 of the shorter side of its map, so a round's candidates spread over
      a visible part of it;
    * ``ControlTask``: 0.1 for a linear policy (an observation entry of size ~1 then moves each
      action by ~0.1·√(inputs), a visible change of gait), 0.1 for an MLP as well (its hidden
      weights start at 1/√fan-in).
    """
    scale = getattr(task, "scale", None)
    if scale is not None:
        value = float(scale)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{task!r}.scale must be a finite number > 0; got {scale!r}")
        return value
    kind = type(task).__name__
    if kind in ("DigitsTask", "PipelineTask"):
        return 1.0
    if kind == "FunctionTask":
        (x_lo, x_hi), (y_lo, y_hi) = task.box
        return min(x_hi - x_lo, y_hi - y_lo) / 12.0
    if kind == "ControlTask":
        return 0.1
    raise ValueError(
        f"no default scale for a {kind}: give the task a `scale` attribute (the typical size of "
        f"one entry of a candidate), or build an optimizer yourself"
    )


def make_optimizer(task: Any, x0: Any, *, m: int = 8, seed: int | None = None) -> RankOptimizer:
    """The ask/tell optimizer a person steers ``task`` with, from ``x0``, ``m`` candidates a round.

    Chosen per kind of task by ``labkit bench steer`` (simulated people on the apps' tasks; tuned
    on the train split, reported on held-out targets in docs/benchmarks.md, "Steering"):

    * latents of the digits model, with or without a class offset:
      :class:`~labkit.optim.ImageThompson` — a Bradley–Terry model of every ranking so far over
      the latents proposes; in the first 3 rounds a second one, over the images the person saw,
      picks each row from 64 rendered proposals (≈ 1.5 s of one core in each of those rounds);
      the incumbent leads every round (so "none of these is better" is an answer, and it is
      used, as are ties);
    * latents of a diffusers pipeline (d ≤ 4096): :class:`~labkit.optim.PreferenceThompson` on
      the prior's sphere, the latent model alone (a pool of 64 pipeline renders a round would
      cost minutes);
    * a point on a map (``FunctionTask``): ZO-RankSGD with the paper's line-search rounds
      (lr = 8·s, μ = s, 6 step sizes), which needed the fewest rounds there;
    * a policy (``ControlTask``): CMA-ES told the ranks (σ = s), likewise;
    * anything with d > 4096 (Stable Diffusion's latents): ZO-RankSGD with line-search rounds
      (the preference model's d×d covariance would not fit), μ = s, lr = 8·s.

    s is :func:`task_scale`. ``seed=None`` draws one from the OS (readable as ``opt.seed``).
    Raises ``ValueError`` for a task without a known scale or a bad ``m``/``x0``.
    """
    from labkit.optim.cmaes import CMAES
    from labkit.optim.image_thompson import ImageThompson
    from labkit.optim.preference import MAX_DIM, PreferenceThompson
    from labkit.optim.zo_ranksgd import ZORankSGD

    m_int = integer(m)
    if m_int is None or m_int < 2:
        raise ValueError(f"m (candidates per round) must be an int >= 2; got {m!r}")
    start = as_start_point(x0)
    s = task_scale(task)
    kind = type(task).__name__
    if kind == "DigitsTask" and start.numel() <= MAX_DIM:
        return ImageThompson(
            start,
            view=task.images,
            pool=POOL,
            look_rounds=LOOK_ROUNDS,
            m=m_int,
            scale=s,
            prior=PRIOR,
            explore=EXPLORE,
            seed=seed,
        )
    if kind == "PipelineTask" and start.numel() <= MAX_DIM:
        return PreferenceThompson(
            start, m=m_int, scale=s, geometry="sphere", prior=PRIOR, explore=EXPLORE, seed=seed
        )
    if kind == "FunctionTask":
        return ZORankSGD(start, lr=8.0 * s, mu=s, m=m_int, line_search=6, seed=seed)
    if kind == "ControlTask":
        return CMAES(start, sigma=s, m=m_int, seed=seed)
    return ZORankSGD(start, lr=8.0 * s, mu=s, m=m_int, line_search=6, seed=seed)


#: PreferenceThompson's λ and κ for latents (tuned on the train split, benchmarks/tune_steer.py).
PRIOR = 0.3
EXPLORE = 0.15
#: ImageThompson's pool and the rounds its image model chooses (chosen on the train split:
#: benchmarks/steer_variants.py, "image_pool=64,prior_frac=0,look_rounds=3").
POOL = 64
LOOK_ROUNDS = 3
