"""labkit.make_optimizer: one default per kind of task, its scales from the task."""

from __future__ import annotations

import pytest
import torch

import labkit
from labkit.defaults import task_scale
from labkit.optim import CMAES, ImageThompson, PreferenceThompson, ZORankSGD
from labkit.tasks.functions import FunctionTask


class _Latents:
    """Stands for a latent task of another size (d > 4096: Stable Diffusion's latents)."""

    scale = 1.0


def test_digit_latents_get_the_image_model_over_the_preference_model() -> None:
    from labkit.tasks.diffusion import DigitsTask

    task = DigitsTask(3, condition=None, classifier=object())
    opt = labkit.make_optimizer(task, task.x0(seed=0), seed=4)
    assert isinstance(opt, ImageThompson) and isinstance(opt, PreferenceThompson)
    assert opt.geometry == "sphere" and opt.scale == 1.0 and opt.m == 8 and opt.seed == 4
    assert opt.pool == 64
    calls = task.calls
    X = opt.ask()
    assert task.calls == calls + 1  # x0 and the first pool: one batched call
    assert X.shape == (8, 1, 16, 16)
    assert torch.equal(X[0], task.x0(seed=0))  # the start leads the first round
    # The 7 samples lie on the prior's shell: ‖z‖ = scale·√256 = 16.
    assert torch.allclose(X[1:].flatten(1).norm(dim=1), torch.full((7,), 16.0))
    # The round's images were drawn with the pool: showing them costs no model call.
    task.images(X)
    assert task.calls == calls + 1


def test_pipeline_latents_get_the_latent_preference_model() -> None:
    class PipelineTask:  # stands for diffusion.PipelineTask (its pool would cost minutes)
        scale = 1.0

    opt = labkit.make_optimizer(PipelineTask(), torch.zeros(4, 8, 8), seed=0)
    assert type(opt) is PreferenceThompson and opt.geometry == "sphere"


def test_a_map_gets_line_search_rounds_scaled_to_the_map() -> None:
    task = FunctionTask("rosenbrock")  # box 5 × 4
    opt = labkit.make_optimizer(task, task.x0(), m=6, seed=0)
    assert isinstance(opt, ZORankSGD) and opt.line_search == 6 and opt.m == 6
    assert opt.mu == pytest.approx(4.0 / 12) and opt.lr == pytest.approx(8.0 * 4.0 / 12)
    assert task_scale(FunctionTask("sphere")) == pytest.approx(10.0 / 12)


def test_a_policy_gets_cma_es() -> None:
    from labkit.tasks.control import ControlTask

    task = ControlTask("CartPole-v1", horizon=20)
    opt = labkit.make_optimizer(task, task.x0(), seed=1)
    assert isinstance(opt, CMAES) and opt.sigma == pytest.approx(0.1)


def test_large_latents_get_zo_ranksgd_with_line_search() -> None:
    opt = labkit.make_optimizer(_Latents(), torch.zeros(4, 40, 40), seed=0)
    assert isinstance(opt, ZORankSGD) and opt.line_search == 6 and opt.mu == 1.0


def test_scales_come_from_the_task_and_bad_input_is_named() -> None:
    task = FunctionTask("sphere")
    task.scale = 2.0  # type: ignore[attr-defined]
    assert labkit.make_optimizer(task, torch.zeros(2)).mu == 2.0
    task.scale = -1.0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        labkit.make_optimizer(task, torch.zeros(2))
    with pytest.raises(ValueError, match="no default scale for a object"):
        labkit.make_optimizer(object(), torch.zeros(2))
    with pytest.raises(ValueError, match=r"m \(candidates per round\) must be an int >= 2"):
        labkit.make_optimizer(FunctionTask("sphere"), torch.zeros(2), m=1)


def test_every_app_steers_with_the_default() -> None:
    from labkit.apps.quickstart import quickstart_app

    view = quickstart_app()
    assert view.session is not None
    expected = labkit.make_optimizer(view.session.task, view.session.task.x0(seed=0))
    assert type(view.session.optimizer) is type(expected)
    assert view.session.optimizer.mu == expected.mu
