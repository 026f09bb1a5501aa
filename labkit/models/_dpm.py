"""DPM-Solver++(2M) sampling (Lu et al. 2022) for a v-predicting diffusion model, in plain torch.

Why a second sampler: at the 4–5 model passes a person's round can afford, DDIM's first-order
step leaves visible mush in the unconditional digits. DPM-Solver++ integrates the same
deterministic probability-flow ODE as DDIM (η = 0), but its multistep form reuses the previous
step's x̂₀ to cancel the leading error term, at no extra model pass. On the digits model it lifts
the share of recognizable unconditional samples at 5 steps by about four points (the model card,
digits_ddpm/README.md).

The ODE in half-log-SNR time. With α_t = √ᾱ_t, σ_t = √(1−ᾱ_t) and λ_t = log(α_t/σ_t), the exact
solution from level s to level t (λ_t > λ_s, h = λ_t − λ_s) is

    x_t = (σ_t/σ_s) x_s + σ_t ∫_{λ_s}^{λ_t} e^{λ} x̂₀(λ) dλ.

Holding x̂₀ constant over the step gives the first-order update (which is DDIM):

    x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) x̂₀(s),

and replacing x̂₀ by its linear extrapolation from the last two levels gives the "2M" update,

    x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) · [x̂₀(s) + (x̂₀(s) − x̂₀(s′)) / (2r)],   r = h′/h,

where s′ is the level before s and h′ = λ_s − λ_{s′}. The first step has no previous x̂₀ and is
first order; so is the last, which moves to σ = 0 (λ = ∞), where the update reduces to x̂₀ itself.

These are the choices of diffusers' ``DPMSolverMultistepScheduler`` with
``algorithm_type="dpmsolver++"``, ``solver_order=2``, ``solver_type="midpoint"``,
``lower_order_final=True``, ``final_sigmas_type="zero"`` and ``timestep_spacing="trailing"``, which
the tests compare against (within float32 rounding: here the step coefficients are computed in
double precision). Like that scheduler, and unlike labkit's DDIM, x̂₀ is not clipped.

Symbols: ``alphas_cumprod[t]`` ᾱ_t; ``alpha``, ``sigma``, ``lam`` α_t, σ_t, λ_t; ``x0`` x̂₀.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from labkit.models._ddim import trailing_timesteps

__all__ = ["DPMSolver2M", "DPMStep"]


@dataclass(frozen=True)
class DPMStep:
    """One step: evaluate the model at level ``t``, then move x to the next level.

    x ← ``c_x``·x + ``c_now``·x̂₀ + ``c_prev``·x̂₀′, where x̂₀′ is the previous step's estimate
    (``c_prev`` = 0 on first-order steps). The last step has ``c_x`` = 0 and ``c_now`` = 1: it
    returns x̂₀.
    """

    t: int
    alpha: float
    sigma: float
    c_x: float
    c_now: float
    c_prev: float


class DPMSolver2M:
    """The DPM-Solver++(2M) sampler of one noise schedule, given as ᾱ_t (float32 ``(T,)``).

    Immutable, so one instance may serve many threads. Deterministic: no noise is ever drawn.
    """

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        if not isinstance(alphas_cumprod, torch.Tensor) or alphas_cumprod.dim() != 1:
            raise ValueError(f"alphas_cumprod must be a 1-d tensor; got {alphas_cumprod!r}")
        self.alphas_cumprod = alphas_cumprod
        self.num_train_timesteps = int(alphas_cumprod.shape[0])

    def timesteps(self, steps: int) -> list[int]:
        """The ``steps`` levels the model is evaluated at: "trailing" from T − 1, as DDIM's."""
        return trailing_timesteps(self.num_train_timesteps, steps)

    def plan(self, steps: int) -> list[DPMStep]:
        """The :class:`DPMStep` s of a ``steps``-step run, coefficients in double precision."""
        levels = self.timesteps(steps)
        abar = self.alphas_cumprod.double()
        # α_t and σ_t through the noise-to-signal ratio σ_t/α_t = √((1−ᾱ)/ᾱ), as diffusers does;
        # then α_t = 1/√(1 + (σ/α)²) and σ_t = (σ/α)·α_t. The clean end has σ = 0, λ = ∞.
        alpha, sigma, lam = [], [], []
        for t in levels:
            ratio = math.sqrt(float((1 - abar[t]) / abar[t]))
            a = 1.0 / math.sqrt(ratio * ratio + 1.0)
            alpha.append(a)
            sigma.append(ratio * a)
            lam.append(math.log(a) - math.log(ratio * a))
        out = []
        h_prev = None
        for i, t in enumerate(levels):
            if i == len(levels) - 1:
                # To σ = 0: e^{−h} = 0, so x ← −α(0 − 1)·x̂₀ = x̂₀ (α = 1 at the clean end).
                out.append(DPMStep(t, alpha[i], sigma[i], c_x=0.0, c_now=1.0, c_prev=0.0))
                break
            h = lam[i + 1] - lam[i]
            phi = -alpha[i + 1] * math.expm1(-h)  # −α_t (e^{−h} − 1) > 0
            c_x = sigma[i + 1] / sigma[i]
            if h_prev is None:
                c_now, c_prev = phi, 0.0
            else:
                r = h_prev / h
                c_now, c_prev = phi * (1.0 + 0.5 / r), -phi * 0.5 / r
            out.append(DPMStep(t, alpha[i], sigma[i], c_x=c_x, c_now=c_now, c_prev=c_prev))
            h_prev = h
        return out

    @staticmethod
    def step(
        step: DPMStep, v: torch.Tensor, x: torch.Tensor, x0_prev: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """From x_t (``x``), the model's v (``v``) and the previous x̂₀ to ``(x_next, x̂₀)``."""
        # x̂₀ from (x_t, v): x_t = α x₀ + σ ε and v = α ε − σ x₀, so x̂₀ = α x_t − σ v.
        x0 = step.alpha * x - step.sigma * v
        x_next = step.c_now * x0
        if step.c_x:
            x_next = x_next + step.c_x * x
        if step.c_prev and x0_prev is not None:
            x_next = x_next + step.c_prev * x0_prev
        return x_next, x0
