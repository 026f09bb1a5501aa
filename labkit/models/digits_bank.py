"""The digits model's sample bank: 4096 unconditional samples, rendered once and shipped.

:func:`labkit.make_optimizer` gives the digits app's unconditional rounds a
:class:`~labkit.optim.bank.SampleBank` (see :mod:`labkit.optim.preference`, "A bank for the first
rounds"). Rendering 4096 samples takes about 90 s of one core, so the bank is made once by
``python -m labkit.models.digits bank`` and ships beside the weights
(``digits_ddpm/bank.safetensors``, 3 MB: the latents in float16 and their 8-bit images). Its
metadata records what rendered it (the weights' digest, sampler, steps, the latent
renormalization); a task that renders differently (another model, sampler or step count, a
conditioned model) gets no bank, and its rounds come from the latent model alone.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import torch

from labkit.optim.bank import SampleBank, half_exact

__all__ = ["BANK_FILE", "BANK_SIZE", "bank_for", "build_bank", "weights_digest"]

#: The bank's file inside the model folder (labkit/models/digits_ddpm/).
BANK_FILE = "bank.safetensors"
#: Samples in the shipped bank, and the seed of their latents.
BANK_SIZE = 4096
BANK_SEED = 20261130


def weights_digest(model: Any) -> str:
    """A digest of the model's weights (as float32 on the CPU), cached on the model."""
    cached = getattr(model, "_labkit_digest", None)
    if cached is not None:
        return str(cached)
    h = hashlib.sha1()
    for name, tensor in sorted(model.unet.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest = h.hexdigest()[:16]
    model._labkit_digest = digest
    return digest


def _render_settings(task: Any) -> dict[str, str] | None:
    """What decides the bank's images, for an unconditional latents task; None otherwise."""
    if type(task).__name__ != "DigitsTask":
        return None
    if task.condition is not None or task.optimize != "latents":
        return None
    return {
        "weights": weights_digest(task.model),
        "sampler": str(task.sampler),
        "steps": str(task.steps),
        "renormalize": str(task.renormalize),
    }


def _packaged_path() -> Path:
    from importlib import resources

    from labkit.models.digits import MODEL_DIR

    return Path(str(resources.files("labkit.models").joinpath(MODEL_DIR, BANK_FILE)))


@functools.lru_cache(maxsize=4)
def _load(path: str) -> tuple[SampleBank, tuple[tuple[str, str], ...]]:
    bank, metadata = SampleBank.load(path)
    return bank, tuple(sorted(metadata.items()))


def bank_for(task: Any, path: str | Path | None = None) -> SampleBank | None:
    """The bank for ``task``'s rounds, or None when it would not show what the task renders.

    ``path`` defaults to the packaged bank; the file is read once per process.
    """
    settings = _render_settings(task)
    file = Path(path) if path is not None else _packaged_path()
    if settings is None or not file.is_file():
        return None
    bank, metadata = _load(str(file))
    if any(dict(metadata).get(k) != v for k, v in settings.items()):
        return None
    if bank.shape != tuple(task.shape):
        return None
    return bank


def build_bank(
    *, n: int = BANK_SIZE, seed: int = BANK_SEED, out: Path | None = None, threads: int = 2
) -> Path:
    """Render ``n`` unconditional samples of the packaged model as the app does and write the
    bank (default: into the packaged model folder); returns the file written."""
    from labkit.tasks.diffusion import DigitsTask

    torch.set_num_threads(threads)
    task = DigitsTask(0, condition=None)
    g = torch.Generator().manual_seed(seed)
    latents = half_exact(torch.randn(n, *task.shape, generator=g))
    with torch.no_grad():
        images = torch.cat([task.images(chunk) for chunk in latents.split(256)])
    bank = SampleBank(latents, images.flatten(1))  # features are rebuilt from the file
    target = out if out is not None else _packaged_path()
    settings = _render_settings(task)
    assert settings is not None
    bank.save(target, images, seed=str(seed), **settings)
    _load.cache_clear()
    return target
