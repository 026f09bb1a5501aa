"""The digits model's shipped sample bank (labkit.models.digits_bank)."""

from __future__ import annotations

import pytest
import torch

from labkit.models.digits_bank import BANK_SIZE, bank_for, build_bank
from labkit.optim.bank import image_features
from labkit.tasks.diffusion import DigitsTask


@pytest.fixture(scope="module")
def task() -> DigitsTask:
    return DigitsTask(0, condition=None, classifier=object())


def test_the_shipped_bank_is_what_the_shipped_model_draws(task: DigitsTask) -> None:
    bank = bank_for(task)
    assert bank is not None and len(bank) == BANK_SIZE and bank.shape == (1, 16, 16)
    # Re-render a few of its latents as the app does: the stored 8-bit images are those renders.
    rows = torch.tensor([0, 1, 2047, BANK_SIZE - 1])
    with torch.no_grad():
        fresh = image_features(task.images(bank.latents[rows]))
    assert torch.allclose(fresh, bank.features[rows], atol=0.02)
    # The latents are prior samples: mean 0, standard deviation 1.
    assert abs(float(bank.latents.mean())) < 0.01
    assert abs(float(bank.latents.std()) - 1.0) < 0.01


def test_no_bank_for_a_task_that_renders_differently(task: DigitsTask) -> None:
    shared = {"model": task.model, "classifier": object()}
    assert bank_for(DigitsTask(3, **shared)) is None  # conditioned on a digit
    assert bank_for(DigitsTask(0, condition=None, steps=4, **shared)) is None
    assert bank_for(DigitsTask(0, condition=None, sampler="ddim", **shared)) is None
    assert bank_for(object()) is None


def test_build_writes_a_bank_only_its_own_renderer_gets(tmp_path, task: DigitsTask) -> None:
    path = build_bank(n=16, seed=3, out=tmp_path / "bank.safetensors", threads=1)
    bank = bank_for(task, path)
    assert bank is not None and len(bank) == 16
    # Another model (here: one weight changed) does not get it.
    from labkit.models.digits import load_digits_model

    other = load_digits_model()
    with torch.no_grad():
        next(other.unet.parameters()).add_(0.01)
    assert bank_for(DigitsTask(0, condition=None, model=other, classifier=object()), path) is None
