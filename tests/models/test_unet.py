"""labkit's own UNet (and the sampling built on it) against diffusers, which trained the weights.

The inference path of the digits model must need torch and safetensors only; these tests hold it
to diffusers' ``UNet2DModel`` and ``DDIMScheduler`` on the shipped weights, and check that it
never imports diffusers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch

from labkit.models._unet import UNet
from labkit.models.digits import (
    IMAGE_SIZE,
    MODEL_DIR,
    NULL_CLASS,
    DigitsModel,
    generate,
    load_digits_model,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Float32 agreement asked of two implementations of the same network (measured: ≤ 2e-6).
ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _shipped_folder() -> Any:
    return resources.as_file(resources.files("labkit.models") / MODEL_DIR)


@pytest.fixture(scope="module")
def reference() -> Any:
    """diffusers' UNet2DModel loaded from the shipped folder the usual way, in eval mode."""
    from diffusers.models.unets.unet_2d import UNet2DModel

    with _shipped_folder() as folder:
        unet = UNet2DModel.from_pretrained(str(folder), subfolder="unet")
    return unet.to(torch.float32).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model() -> DigitsModel:
    return load_digits_model()


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- the network ------------------------------------------------------------------------------


def test_same_parameter_names_and_shapes_as_diffusers(model: DigitsModel, reference: Any) -> None:
    ours = {k: tuple(v.shape) for k, v in model.unet.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours == theirs
    assert sum(p.numel() for p in model.unet.parameters()) == 1_114_209  # the model card


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_forward_matches_diffusers_on_the_shipped_weights(
    model: DigitsModel, reference: Any, batch: int
) -> None:
    x = _randn(batch, 1, IMAGE_SIZE, IMAGE_SIZE, seed=batch)
    labels = torch.randint(0, NULL_CLASS + 1, (batch,), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        for t in (999, 749, 500, 99, 0):
            ours = model.unet(x, t, labels)
            theirs = reference(x, torch.tensor(t), class_labels=labels).sample
            torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
        # One timestep per row.
        per_row = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(2))
        ours = model.unet(x, per_row, labels)
        theirs = reference(x, per_row, class_labels=labels).sample
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_forward_matches_diffusers_on_another_configuration() -> None:
    """Every supported setting away from the digits model's own, on random weights."""
    from diffusers.models.unets.unet_2d import UNet2DModel

    config = {
        "sample_size": 8,
        "in_channels": 2,
        "out_channels": 3,
        "block_out_channels": [16, 24, 32],
        "layers_per_block": 2,
        "down_block_types": ["AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"],
        "norm_num_groups": 4,
        "norm_eps": 1e-6,
        "attention_head_dim": None,  # one head over all channels
        "num_class_embeds": 5,
        "time_embedding_dim": 40,
        "flip_sin_to_cos": False,
        "freq_shift": 1,
        "mid_block_scale_factor": 2.0,
        "dropout": 0.1,  # a training setting: no effect in eval
    }
    torch.manual_seed(0)  # UNet2DModel initializes through the global generator
    theirs = UNet2DModel(**config).eval()
    with torch.no_grad():  # GroupNorm starts at (1, 0): move it so the test sees its affine part
        for name, p in theirs.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn(p.shape))
    ours = UNet(config).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = _randn(4, 2, 8, 8, seed=3)
    labels = torch.tensor([0, 4, 2, 1])
    with torch.inference_mode():
        for t in (0, 17, 999):
            torch.testing.assert_close(
                ours(x, t, labels), theirs(x, t, class_labels=labels).sample, atol=ATOL, rtol=0
            )


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"resnet_time_scale_shift": "scale_shift"}, "resnet_time_scale_shift"),
        ({"time_embedding_type": "fourier"}, "time_embedding_type"),
        ({"up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"]}, "up_block_types"),
        ({"num_class_embeds": None}, "num_class_embeds"),
        ({"norm_num_groups": 7}, "norm_num_groups"),
        ({"block_out_channels": [32, 64]}, "block_out_channels"),
        ({"attention_head_dim": 128}, "attention_head_dim"),
        ({"cross_attention_dim": 64}, "cross_attention_dim"),
    ],
)
def test_an_unsupported_configuration_names_its_key(change: dict[str, Any], key: str) -> None:
    from labkit.models.digits import _unet_config

    with pytest.raises(ValueError, match=key):
        UNet({**_unet_config(), **change})


def test_loading_a_folder_with_an_unsupported_setting_names_it(tmp_path: Path) -> None:
    with _shipped_folder() as folder:
        shutil.copytree(folder, tmp_path / "m")
    config = tmp_path / "m" / "unet" / "config.json"
    good = config.read_text()
    config.write_text(json.dumps({**json.loads(good), "act_fn": "gelu"}))
    with pytest.raises(ValueError, match="'act_fn'='gelu'"):
        load_digits_model(weights=tmp_path / "m")
    config.write_text(good)
    schedule = tmp_path / "m" / "scheduler" / "scheduler_config.json"
    schedule.write_text(
        json.dumps({**json.loads(schedule.read_text()), "prediction_type": "epsilon"})
    )
    with pytest.raises(ValueError, match="'prediction_type'='epsilon'"):
        load_digits_model(weights=tmp_path / "m")


def test_loading_something_else_than_a_model_folder_says_what_is_wrong(tmp_path: Path) -> None:
    with _shipped_folder() as folder:
        weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
        with pytest.raises(ValueError, match=r"must be a model folder .* is a file"):
            load_digits_model(weights=weights)
        shutil.copytree(folder, tmp_path / "m")
    (tmp_path / "m" / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(ValueError, match=r"lacks scheduler/scheduler_config\.json"):
        load_digits_model(weights=tmp_path / "m")
    with pytest.raises(ValueError, match="is nothing"):
        load_digits_model(weights=tmp_path / "absent")


def test_the_folder_loads_in_diffusers_as_a_scheduler_of_either_kind() -> None:
    """DDIMScheduler.from_pretrained reads labkit's schedule; DPM-Solver++ takes it over."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    with _shipped_folder() as folder:
        ddim = DDIMScheduler.from_pretrained(str(folder), subfolder="scheduler")
    model = load_digits_model()
    for key, value in model.scheduler_config.items():
        assert ddim.config[key] == value, key
    dpm = DPMSolverMultistepScheduler.from_config(ddim.config)
    assert dpm.config.prediction_type == "v_prediction"
    assert dpm.config.timestep_spacing == "trailing"


# --- sampling -----------------------------------------------------------------------------------


def _reference_generate(
    unet: Any,
    scheduler_config: dict[str, Any],
    latents: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The sampling loop as labkit ran it on diffusers: DDIMScheduler steps, guidance on v."""
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    scheduler = DDIMScheduler(**scheduler_config)
    scheduler.set_timesteps(steps)
    guided = guidance != 1.0
    classes = torch.cat([labels, torch.full_like(labels, NULL_CLASS)]) if guided else labels
    x = latents
    with torch.inference_mode():
        for t in scheduler.timesteps:
            v = unet(torch.cat([x, x]) if guided else x, t, class_labels=classes).sample
            if guided:
                v_cond, v_null = v.chunk(2)
                v = v_null + guidance * (v_cond - v_null)
            x = scheduler.step(v, t, x, eta=eta, generator=generator).prev_sample
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


@pytest.mark.parametrize("steps", [3, 5, 8])
def test_dpm_solver_matches_diffusers_on_the_shipped_model(
    model: DigitsModel, reference: Any, steps: int
) -> None:
    """generate(sampler="dpm++2m") is diffusers' DPM-Solver++(2M) loop on the same folder."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    with _shipped_folder() as folder:
        config = DDIMScheduler.from_pretrained(str(folder), subfolder="scheduler").config
    scheduler = DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
    )
    scheduler.set_timesteps(steps)
    latents = _randn(5, 1, IMAGE_SIZE, IMAGE_SIZE, seed=steps)
    labels = torch.tensor([1, 4, NULL_CLASS, 8, NULL_CLASS])
    x = latents
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x = scheduler.step(reference(x, t, class_labels=labels).sample, t, x).prev_sample
    theirs = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    ours = generate(model, latents, labels, steps=steps, guidance=1.0, sampler="dpm++2m")
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("steps", [4, 10])
@pytest.mark.parametrize("guidance", [1.0, 1.5])
def test_generate_matches_a_diffusers_sampling_loop(
    model: DigitsModel, reference: Any, steps: int, guidance: float
) -> None:
    latents = _randn(6, 1, IMAGE_SIZE, IMAGE_SIZE, seed=steps)
    labels = torch.tensor([0, 3, 7, 9, NULL_CLASS, 5])
    ours = generate(model, latents, labels, steps=steps, guidance=guidance)
    theirs = _reference_generate(
        reference, model.scheduler_config, latents, labels, steps=steps, guidance=guidance
    )
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


@pytest.mark.parametrize("steps", [3, 6])  # T/steps not an integer: DDIMScheduler's prev rule
def test_generate_matches_diffusers_at_uneven_step_counts(
    model: DigitsModel, reference: Any, steps: int
) -> None:
    latents = _randn(4, 1, IMAGE_SIZE, IMAGE_SIZE, seed=20 + steps)
    labels = torch.tensor([1, 2, 8, NULL_CLASS])
    ours = generate(model, latents, labels, steps=steps)
    theirs = _reference_generate(
        reference, model.scheduler_config, latents, labels, steps=steps, guidance=1.5
    )
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_generate_with_eta_matches_diffusers_with_the_same_generator(
    model: DigitsModel, reference: Any
) -> None:
    latents = _randn(4, 1, IMAGE_SIZE, IMAGE_SIZE, seed=5)
    labels = torch.tensor([4, 4, 6, NULL_CLASS])
    ours = generate(
        model,
        latents,
        labels,
        steps=4,
        guidance=1.5,
        eta=0.7,
        generator=torch.Generator().manual_seed(11),
    )
    theirs = _reference_generate(
        reference,
        model.scheduler_config,
        latents,
        labels,
        steps=4,
        guidance=1.5,
        eta=0.7,
        generator=torch.Generator().manual_seed(11),
    )
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


# --- no diffusers on the inference path -------------------------------------------------------

_MODELS_ONLY = """
    import sys
    import torch
    import labkit.models.digits as digits

    model = digits.load_digits_model()
    z = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    images = digits.generate(model, z, torch.tensor([3, digits.NULL_CLASS]), steps=2)
    assert images.shape == (2, 1, 16, 16)
    digits.DigitClassifier().probabilities(images)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "diffusers")
    print("diffusers modules:", loaded)
    assert not loaded
"""
_APP_KERNEL = """
    import sys
    from labkit.apps.digits import digits_app

    page = digits_app()  # what the digits app's kernel runs: imports, model, first round
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "diffusers")
    print("diffusers modules:", loaded)
    assert not loaded
"""


@pytest.mark.parametrize("script", [_MODELS_ONLY, _APP_KERNEL], ids=["models", "app-kernel"])
def test_the_inference_path_never_imports_diffusers(tmp_path: Path, script: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "LABKIT_DB": str(tmp_path / "rounds.sqlite"),
        "LABKIT_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
