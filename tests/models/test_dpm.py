"""labkit's DPM-Solver++(2M) against diffusers' DPMSolverMultistepScheduler, and on the model."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from labkit.models._ddim import DDIM
from labkit.models._dpm import DPMSolver2M
from labkit.models.digits import _scheduler_config


def _ours() -> DPMSolver2M:
    return DPMSolver2M(DDIM(_scheduler_config()).alphas_cumprod)


def _diffusers() -> Any:
    from diffusers import DPMSolverMultistepScheduler

    config = {
        k: v
        for k, v in _scheduler_config().items()
        if k not in ("clip_sample", "clip_sample_range", "set_alpha_to_one")
    }
    return DPMSolverMultistepScheduler(
        **config,
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
    )


def test_timesteps_are_ddims_trailing_levels() -> None:
    ours, ddim = _ours(), DDIM(_scheduler_config())
    for steps in (1, 2, 3, 4, 5, 6, 10, 16, 50, 1000):
        assert ours.timesteps(steps) == ddim.timesteps(steps), steps


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 6, 10, 20])
def test_a_run_is_diffusers_within_float32_rounding(steps: int) -> None:
    """The whole trajectory, driven by a fixed pseudo-model, matches step by step."""
    ours, theirs = _ours(), _diffusers()
    theirs.set_timesteps(steps)
    assert theirs.timesteps.tolist() == [s.t for s in ours.plan(steps)]
    gen = torch.Generator().manual_seed(steps)
    x_ours = x_theirs = torch.randn(4, 1, 16, 16, generator=gen)
    x0 = None
    for step in ours.plan(steps):
        # A v that depends on x and t, as a network's does, so errors would compound.
        v = torch.tanh(x_ours) * (step.t / 1000.0) + 0.3 * torch.randn(x_ours.shape, generator=gen)
        x_ours, x0 = DPMSolver2M.step(step, v, x_ours, x0)
        x_theirs = theirs.step(v, step.t, x_theirs).prev_sample
        torch.testing.assert_close(x_ours, x_theirs, rtol=1e-4, atol=1e-4, msg=f"t={step.t}")
        x_theirs = x_ours  # compare each step from the same state
    assert x0 is not None
    torch.testing.assert_close(x_ours, x0)  # the last step returns the x₀ estimate


def test_second_order_steps_use_the_previous_estimate() -> None:
    plan = _ours().plan(5)
    assert plan[0].c_prev == 0.0  # no previous x̂₀ yet: first order
    assert all(s.c_prev < 0 for s in plan[1:-1])  # x̂₀ extrapolated from the last two
    last = plan[-1]
    assert (last.c_x, last.c_now, last.c_prev) == (0.0, 1.0, 0.0)


def test_on_gaussian_data_the_error_falls_as_the_square_of_the_step() -> None:
    """Data x₀ ~ N(0, s²): the exact v and the exact end point of the ODE are known.

    For x₀ ~ N(0, s²) the ideal denoiser is x̂₀(x_t) = α s² x_t / (α² s² + σ²), which gives the
    exact v. The marginal of x_t is N(0, α² s² + σ²) and the probability-flow ODE maps quantile
    to quantile, so x_t / √(α_t² s² + σ_t²) is constant along it: the end point is
    x₀ = s · x_T / √(α_T² s² + σ_T²). Doubling the steps must cut DPM-Solver++(2M)'s error by
    well over DDIM's factor of two (first order), and at the app's 5 steps it must already be
    the smaller.
    """
    s2 = 0.25
    abar = DDIM(_scheduler_config()).alphas_cumprod.double()

    def v_of(x: torch.Tensor, t: int) -> torch.Tensor:
        a2 = abar[t]
        a, sg = a2.sqrt(), (1 - a2).sqrt()
        x0 = a * s2 * x / (a2 * s2 + (1 - a2))
        eps = (x - a * x0) / sg
        return a * eps - sg * x0

    ddim = DDIM({**_scheduler_config(), "clip_sample": False})
    x_T = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    a2_T = abar[999]
    exact = s2**0.5 * x_T / (a2_T * s2 + (1 - a2_T)).sqrt()

    def err_ddim(steps: int) -> float:
        x = x_T.clone()
        for step in ddim.plan(steps):
            x, _ = ddim.step(step, v_of(x, step.t), x)
        return float((x - exact).abs().max())

    def err_dpm(steps: int) -> float:
        x, x0 = x_T.clone(), None
        for step in _ours().plan(steps):
            x, x0 = DPMSolver2M.step(step, v_of(x, step.t), x, x0)
        return float((x - exact).abs().max())

    assert err_dpm(5) < 0.8 * err_ddim(5)
    assert err_ddim(10) / err_ddim(20) < 2.5  # first order: about 2
    assert err_dpm(10) / err_dpm(20) > 3.5  # second order: about 4 or more
    assert err_dpm(200) < 1e-3


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"steps must lie in 1\.\.1000"):
        _ours().plan(0)
    with pytest.raises(ValueError, match="steps must be an integer"):
        _ours().plan(2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-d tensor"):
        DPMSolver2M(torch.ones(2, 2))
