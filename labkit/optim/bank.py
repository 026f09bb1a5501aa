"""A bank of prior samples drawn once, with what each one looks like.

A person's first rounds are the dearest: the preference model of the latents
(:class:`~labkit.optim.PreferenceThompson`) starts knowing nothing, so its first rounds are as
good as fresh draws. What the person compares, though, is *images*, and images that look alike
are near each other in pixels while their latents can be far apart. A bank holds N latents
sampled from the prior once (offline; the renders cost nothing in a round) together with the
features of their images, φ_img; a Bradley–Terry model over φ_img of everything the person has
ranked then picks each early round from the whole bank: the person searches thousands of the
model's samples in a few rounds, instead of eight fresh ones a round.

The features are the rendered image, flattened, centred and scaled to unit length
(:func:`image_features`): a linear utility wᵀφ_img is then a correlation with a template image,
invariant to the overall ink and contrast, which is how a person matches shapes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["SampleBank", "half_exact", "image_features"]


def image_features(images: torch.Tensor) -> torch.Tensor:
    """φ_img: each image ``(n, ...)`` flattened, centred and scaled to unit norm (float64, CPU).

    An image of one flat colour has no shape to compare and maps to zeros.
    """
    if not isinstance(images, torch.Tensor) or images.dim() < 2 or images.shape[0] < 1:
        raise ValueError(
            "images must be a tensor (n, ...) with at least one image; got "
            f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
        )
    F = images.detach().to("cpu", torch.float64).flatten(1)
    F = F - F.mean(dim=1, keepdim=True)
    return F / F.norm(dim=1, keepdim=True).clamp_min(1e-12)


class SampleBank:
    """N prior samples (``latents``, ``(N, *shape)``) and their image features (``(N, p)``).

    Build one with :meth:`build` (renders every latent once), keep it with :meth:`save` and
    :meth:`load` (safetensors, half the bytes of float32: the latents as float16, so a bank meant
    to be saved holds latents that float16 represents exactly, see :func:`half_exact`; the
    images as 8-bit pixels).
    ``fingerprint`` names the bank's latents, so an optimizer's saved state can refuse a
    different bank.
    """

    def __init__(self, latents: torch.Tensor, features: torch.Tensor) -> None:
        if not isinstance(latents, torch.Tensor) or latents.dim() < 2:
            raise ValueError("latents must be a tensor (N, ...) with one prior sample per row")
        if not isinstance(features, torch.Tensor) or features.dim() != 2:
            raise ValueError("features must be a 2-D tensor (N, p), one row per latent")
        if latents.shape[0] != features.shape[0] or latents.shape[0] < 1:
            raise ValueError(
                f"latents and features must have the same number N >= 1 of rows; got "
                f"{latents.shape[0]} and {features.shape[0]}"
            )
        if not bool(torch.isfinite(latents).all()) or not bool(torch.isfinite(features).all()):
            raise ValueError("the bank's latents and features must be finite")
        self.latents = latents.detach().to("cpu", torch.float32).contiguous()
        self.features = features.detach().to("cpu", torch.float64).contiguous()
        self.fingerprint = hashlib.sha1(self.latents.numpy().tobytes()).hexdigest()[:16]

    def __len__(self) -> int:
        return self.latents.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """One latent's shape."""
        return tuple(self.latents.shape[1:])

    def __repr__(self) -> str:
        return f"SampleBank(N={len(self)}, shape={self.shape}, p={self.features.shape[1]})"

    @classmethod
    def build(
        cls,
        images: Callable[[torch.Tensor], torch.Tensor],
        latents: torch.Tensor,
        *,
        batch: int = 256,
    ) -> SampleBank:
        """Render ``latents`` with ``images`` (a task's ``images``), ``batch`` rows a call."""
        rows = [image_features(images(chunk)) for chunk in latents.split(batch)]
        return cls(latents, torch.cat(rows))

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path, images: torch.Tensor, **metadata: str) -> None:
        """Write the latents, ``images`` (the renders in [0, 1], stored as 8-bit) and string
        ``metadata`` (what made them) to a safetensors file; :meth:`load` rebuilds the
        features from the stored images."""
        from safetensors.torch import save_file

        if images.shape[0] != len(self):
            raise ValueError(f"images must have {len(self)} rows; got {images.shape[0]}")
        half = self.latents.to(torch.float16)
        if not torch.equal(half.to(torch.float32), self.latents):
            raise ValueError(
                "the bank's latents are not exact in float16; build the bank from "
                "half_exact(latents) so that the saved latents are the rendered ones"
            )
        pixels = (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
        save_file({"latents": half, "images": pixels}, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> tuple[SampleBank, dict[str, str]]:
        """The bank in ``path`` and the metadata it was saved with."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            names = set(f.keys())
            if names != {"latents", "images"}:
                raise ValueError(f"{str(path)!r} is not a sample bank (tensors {sorted(names)})")
            latents, pixels = f.get_tensor("latents"), f.get_tensor("images")
        return cls(latents.float(), image_features(pixels.to(torch.float64) / 255.0)), metadata


def half_exact(latents: torch.Tensor) -> torch.Tensor:
    """``latents`` rounded to the nearest float16 values (as float32): what a saved bank holds.
    Rounding a prior sample by ≤ 2⁻¹¹ relative changes nothing a person sees."""
    return latents.to(torch.float16).to(torch.float32)


def farthest_rows(features: torch.Tensor, start: torch.Tensor, n: int) -> list[int]:
    """Greedy farthest-point: ``n`` rows of ``features`` far from ``start`` and from each other
    (each pick maximizes its distance to the nearest of ``start`` and the picks before it)."""
    nearest = (features - start).norm(dim=1)
    chosen: list[int] = []
    for _ in range(n):
        j = int(nearest.argmax())
        chosen.append(j)
        nearest = torch.minimum(nearest, (features - features[j]).norm(dim=1))
        nearest[j] = -math.inf
    return chosen


def _check_bank(bank: Any) -> SampleBank:
    if not isinstance(bank, SampleBank):
        raise ValueError(f"bank must be a SampleBank; got {type(bank).__name__}")
    return bank
