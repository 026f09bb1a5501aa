"""DDIM sampling (Song et al. 2021) for a v-predicting diffusion model, in plain torch.

The digits model was trained with diffusers' ``DDIMScheduler`` noise schedule; sampling needs
only its few lines of arithmetic, so :class:`DDIM` carries them without importing diffusers (whose
import costs seconds of an app's start-up). It reproduces ``DDIMScheduler.set_timesteps`` and
``step`` (``use_clipped_model_output=False``) for the configurations it accepts, quirks
included, so that images drawn from the shipped weights are the ones the model card measured.

Symbols:

======================  ==============================================================
code                    paper
======================  ==============================================================
``T``                   number of training noise levels (``num_train_timesteps``)
``alphas_cumprod[t]``   ᾱ_t = ∏_{s ≤ t} (1 − β_s); x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε
``v``                   the model's output, v_t = √ᾱ_t ε − √(1−ᾱ_t) x₀
``x0``, ``eps``         x̂₀ and ε̂, the estimates of x₀ and ε recovered from (x_t, v)
``sigma``               σ_t(η), the standard deviation of the fresh noise of a step
======================  ==============================================================

Supported configuration (keyword arguments of ``DDIMScheduler``; absent keys take its
defaults): ``beta_schedule="squaredcos_cap_v2"``, ``prediction_type="v_prediction"``,
``timestep_spacing="trailing"``, any ``num_train_timesteps``, ``clip_sample`` (and
``clip_sample_range``), ``set_alpha_to_one``. Anything else raises a ValueError naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["DDIM", "DDIMStep", "cosine_betas", "trailing_timesteps"]

#: DDIMScheduler's keyword arguments and their defaults (which apply to absent keys).
_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "set_alpha_to_one": True,
    "thresholding": False,
    "rescale_betas_zero_snr": False,
    "trained_betas": None,
}
#: The settings implemented here at one value only (some are not DDIMScheduler's default).
_ONLY: dict[str, Any] = {
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
    "thresholding": False,
    "rescale_betas_zero_snr": False,
    "trained_betas": None,
}
#: Keys without effect on the supported configuration: the endpoints of a linear schedule, the
#: offset of "leading" spacing, the parameters of thresholding (off).
_IGNORED = (
    "beta_start",
    "beta_end",
    "steps_offset",
    "dynamic_thresholding_ratio",
    "sample_max_value",
)


def cosine_betas(num_train_timesteps: int, *, max_beta: float = 0.999) -> torch.Tensor:
    """The "squaredcos_cap_v2" schedule (Nichol & Dhariwal 2021): β_t, a float32 ``(T,)`` tensor.

    ᾱ(s) = cos²((s + 0.008)/1.008 · π/2) for s ∈ [0, 1] falls smoothly from 1 to 0; each β_t is
    what makes the product of (1 − β) follow it: β_t = 1 − ᾱ((t+1)/T) / ᾱ(t/T), capped at
    ``max_beta`` because ᾱ(1) = 0 would make the last β exactly 1 (ᾱ_{T−1} = 0, a singularity
    of every formula that divides by √ᾱ or by 1 − ᾱ_t/ᾱ_prev). Computed in double precision,
    stored in float32.
    """

    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    T = num_train_timesteps
    betas = [min(1.0 - alpha_bar((t + 1) / T) / alpha_bar(t / T), max_beta) for t in range(T)]
    return torch.tensor(betas, dtype=torch.float32)


def trailing_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """The ``steps`` noise levels to evaluate a model at, from noisiest (T − 1) down.

    "Trailing" spacing: round(T − k·T/steps) − 1 for k = 0 .. steps − 1, so the first step is
    always t = T − 1, the level that pure Gaussian latents are at ("leading" spacing would start
    at T − T/steps, a level the latents are not at, and never evaluate t = T − 1). Shared by DDIM
    and DPM-Solver++ (diffusers computes both schedulers' trailing levels this way).
    """
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ValueError(f"steps must be an integer; got {steps!r}")
    T = num_train_timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must lie in 1..{T} (num_train_timesteps); got {steps}")
    # numpy's float64 arange and round-half-to-even, as DDIMScheduler computes them: for
    # steps like 16 (T/steps = 62.5) the levels sit on .5 and the rounding rule decides.
    levels = np.round(np.arange(T, 0, -T / steps)).astype(np.int64) - 1
    return [int(t) for t in levels]


@dataclass(frozen=True)
class DDIMStep:
    """One sampling step: evaluate the model at noise level ``t``, then move to level ``prev``.

    ``alpha_bar`` is ᾱ_t and ``alpha_bar_prev`` ᾱ at ``prev`` (past the end, ``prev`` < 0: 1
    with ``set_alpha_to_one``, else ᾱ_0), both 0-d float32 CPU tensors.
    """

    t: int
    prev: int
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor


class DDIM:
    """The DDIM sampler of one noise schedule. Immutable, so one instance may serve many threads.

    ``config`` holds keyword arguments of diffusers' ``DDIMScheduler`` (a model folder's
    ``scheduler/scheduler_config.json``); see the module docstring for what is supported.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        settings = dict(_DEFAULTS)
        for key, value in config.items():
            if key.startswith("_") or key in _IGNORED:
                continue  # diffusers' bookkeeping (_class_name, ...) or no effect here
            if key not in _DEFAULTS:
                raise ValueError(f"scheduler config key {key!r} is unknown to labkit's DDIM")
            settings[key] = value
        for key, want in _ONLY.items():
            if settings[key] != want:
                absent = (
                    " (the key is absent: DDIMScheduler's default)" if key not in config else ""
                )
                raise ValueError(
                    f"scheduler config {key!r}={settings[key]!r}{absent} is not supported by "
                    f"labkit's DDIM (supported: {want!r})"
                )
        T = settings["num_train_timesteps"]
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"scheduler config 'num_train_timesteps' must be >= 1; got {T!r}")
        for key in ("clip_sample", "set_alpha_to_one"):
            if not isinstance(settings[key], bool):
                raise ValueError(
                    f"scheduler config {key!r} must be true or false; got {settings[key]!r}"
                )
        clip_range = settings["clip_sample_range"]
        if (
            isinstance(clip_range, bool)
            or not isinstance(clip_range, (int, float))
            or not clip_range > 0
        ):
            raise ValueError(
                f"scheduler config 'clip_sample_range' must be a number > 0; got {clip_range!r}"
            )
        clip, one = settings["clip_sample"], settings["set_alpha_to_one"]
        self.num_train_timesteps: int = T
        #: Clip x̂₀ to [−clip_range, clip_range] at every step (None: no clipping). The data the
        #: model learned lie in that range, so an estimate outside it is known to be wrong.
        self.clip_range: float | None = float(clip_range) if clip else None
        # ᾱ in float32, multiplied out in float32 as DDIMScheduler does, so ᾱ_t is bit for bit
        # the one the model was trained (and its card measured) with.
        self.alphas_cumprod: torch.Tensor = torch.cumprod(1.0 - cosine_betas(T), dim=0)
        # The last step has no "previous" level. ᾱ = 1 there makes it return x̂₀ itself (no
        # noise left); the alternative is ᾱ_0, one level short of clean.
        self.final_alpha_cumprod: torch.Tensor = (
            torch.tensor(1.0) if one else self.alphas_cumprod[0]
        )

    def timesteps(self, steps: int) -> list[int]:
        """The ``steps`` noise levels to evaluate the model at (:func:`trailing_timesteps`)."""
        return trailing_timesteps(self.num_train_timesteps, steps)

    def plan(self, steps: int) -> list[DDIMStep]:
        """The :class:`DDIMStep` s of a ``steps``-step sampling run, in order."""
        levels = self.timesteps(steps)  # checks steps
        stride = self.num_train_timesteps // steps
        out = []
        for t in levels:
            # DDIMScheduler's previous level is t − ⌊T/steps⌋, not the next entry of
            # timesteps(): with trailing spacing and T/steps not an integer the two differ by
            # one (steps = 6: 999 → 833 while the next level evaluated is 832), and the last
            # step may end at level 0 (ᾱ_0 ≈ 1 − 4e-5) instead of at ᾱ = 1. The shipped model's
            # figures were measured with this rule, so it is kept.
            prev = t - stride
            a_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
            out.append(
                DDIMStep(t=t, prev=prev, alpha_bar=self.alphas_cumprod[t], alpha_bar_prev=a_prev)
            )
        return out

    def step(
        self,
        step: DDIMStep,
        v: torch.Tensor,
        x: torch.Tensor,
        *,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """From x_t (``x``) and the model's v prediction (``v``, same shape) to x_prev.

        Returns ``(x_prev, x0)``, both shaped like ``x``, in its dtype and on its device: the
        sample at level ``step.prev`` and the (clipped) estimate x̂₀. With ``eta`` = 0 the step
        is deterministic; with η > 0 it adds σ_t(η)·z, z ~ N(0, I) drawn from ``generator``
        (torch's global generator if None) on the generator's device, then moved to ``x``'s.
        """
        a_t, a_prev = step.alpha_bar, step.alpha_bar_prev
        b_t = 1 - a_t
        # 1. x̂₀ and ε̂ from (x_t, v). The pair (x_t, v) is (x₀, ε) rotated by the angle whose
        # cosine is √ᾱ_t (as ᾱ + (1 − ᾱ) = 1), so the inverse is the transposed rotation:
        #    x̂₀ = √ᾱ_t x_t − √(1−ᾱ_t) v,    ε̂ = √ᾱ_t v + √(1−ᾱ_t) x_t.
        # Neither divides by √ᾱ_t, which is ≈ 0 at the first step (why the model predicts v).
        x0 = a_t**0.5 * x - b_t**0.5 * v
        eps = a_t**0.5 * v + b_t**0.5 * x
        # 2. Clip x̂₀ to the data's range. ε̂ stays as predicted (DDIMScheduler's default, which
        # the model's figures were measured with), not re-derived from the clipped x̂₀.
        if self.clip_range is not None:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        # 3. DDIM's eq. (12) with (16): x_prev = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z, where
        #    σ² = η² (1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev)
        # is η² times the variance of the true posterior q(x_prev | x_t, x₀): η = 1 is DDPM's
        # ancestral step, η = 0 moves along the deterministic path that keeps ε̂ fixed.
        variance = ((1 - a_prev) / b_t) * (1 - a_t / a_prev)
        sigma = eta * variance**0.5
        x_prev = a_prev**0.5 * x0 + (1 - a_prev - sigma**2) ** 0.5 * eps
        if eta > 0:
            device = generator.device if generator is not None else x.device
            z = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
            x_prev = x_prev + sigma * z.to(x.device)
        return x_prev, x0
