"""labkit's DDIM sampler against diffusers' DDIMScheduler, whose schedule trained the weights."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from labkit.models._ddim import DDIM
from labkit.models.digits import _scheduler_config


def _diffusers(config: dict[str, Any]) -> Any:
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    return DDIMScheduler(**config)


def test_the_noise_schedule_is_diffusers_bit_for_bit() -> None:
    ours, theirs = DDIM(_scheduler_config()), _diffusers(_scheduler_config())
    assert ours.alphas_cumprod.dtype == torch.float32
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)
    assert torch.equal(ours.final_alpha_cumprod, theirs.final_alpha_cumprod)


def test_timesteps_are_diffusers_at_every_step_count() -> None:
    ours, theirs = DDIM(_scheduler_config()), _diffusers(_scheduler_config())
    for steps in range(1, 1001):
        theirs.set_timesteps(steps)
        assert ours.timesteps(steps) == theirs.timesteps.tolist(), steps
    assert ours.timesteps(4) == [999, 749, 499, 249]


def test_the_previous_level_follows_diffusers_rule() -> None:
    """t − ⌊T/steps⌋: at 6 steps one past the next level evaluated, and the last ends at 0."""
    plan = DDIM(_scheduler_config()).plan(6)
    assert [s.t for s in plan] == [999, 832, 666, 499, 332, 166]
    assert [s.prev for s in plan] == [833, 666, 500, 333, 166, 0]
    assert DDIM(_scheduler_config()).plan(10)[-1].prev < 0  # ᾱ = 1: the x₀ estimate itself


@pytest.mark.parametrize(
    "change",
    [{}, {"clip_sample": False}, {"set_alpha_to_one": False}, {"clip_sample_range": 0.5}],
)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_a_step_is_diffusers_bit_for_bit(change: dict[str, Any], eta: float) -> None:
    config = {**_scheduler_config(), **change}
    ours, theirs = DDIM(config), _diffusers(config)
    gen = torch.Generator().manual_seed(0)
    for steps in (1, 3, 4, 6, 10):
        theirs.set_timesteps(steps)
        for step in ours.plan(steps):
            x = torch.randn(3, 1, 16, 16, generator=gen)
            v = 2.0 * torch.randn(3, 1, 16, 16, generator=gen)  # large: the clipping acts
            a = ours.step(step, v, x, eta=eta, generator=torch.Generator().manual_seed(step.t))
            b = theirs.step(v, step.t, x, eta=eta, generator=torch.Generator().manual_seed(step.t))
            # Bit for bit, NaN included: at η = 1 the direction's 1 − ᾱ_prev − σ² is ≈ 0 and
            # float32 rounding can make it negative (here: steps=1 without set_alpha_to_one).
            same = {"rtol": 0, "atol": 0, "equal_nan": True, "msg": f"{steps} steps, t={step.t}"}
            torch.testing.assert_close(a[0], b.prev_sample, **same)
            torch.testing.assert_close(a[1], b.pred_original_sample, **same)


def test_a_step_keeps_the_sample_dtype_and_leaves_the_generator_alone_at_eta_zero() -> None:
    ddim = DDIM(_scheduler_config())
    step = ddim.plan(4)[1]
    x, v = (
        torch.randn(2, 1, 4, 4, dtype=torch.float64),
        torch.randn(2, 1, 4, 4, dtype=torch.float64),
    )
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    prev, x0 = ddim.step(step, v, x, generator=gen)
    assert prev.dtype == x0.dtype == torch.float64
    assert torch.equal(gen.get_state(), state)
    assert float(x0.abs().max()) <= 1.0  # clipped to the data's range


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"beta_schedule": "linear"}, "'beta_schedule'='linear'"),
        ({"prediction_type": "epsilon"}, "'prediction_type'='epsilon'"),
        ({"thresholding": True}, "'thresholding'=True"),
        ({"variance_type": "fixed_small"}, "'variance_type' is unknown"),
        ({"num_train_timesteps": 0}, "'num_train_timesteps'"),
        ({"clip_sample": "yes"}, "'clip_sample'"),
        ({"clip_sample_range": -1.0}, "'clip_sample_range'"),
    ],
)
def test_an_unsupported_configuration_names_its_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DDIM({**_scheduler_config(), **change})


def test_an_absent_key_takes_diffusers_default_and_says_so() -> None:
    config = _scheduler_config()
    del config["timestep_spacing"]  # DDIMScheduler's default is "leading"
    with pytest.raises(ValueError, match="'timestep_spacing'='leading' \\(the key is absent"):
        DDIM(config)
    # diffusers' bookkeeping keys and settings without effect here are accepted.
    DDIM({**_scheduler_config(), "_class_name": "DDIMScheduler", "steps_offset": 1})


@pytest.mark.parametrize("steps", [0, 1001, 2.0, True])
def test_step_counts_outside_the_schedule_are_refused(steps: Any) -> None:
    with pytest.raises(ValueError, match="steps must"):
        DDIM(_scheduler_config()).plan(steps)
