"""Prior sampling: what a user does without us.

Without an optimizer, a person steering a generative model keeps drawing fresh samples from the
model's prior — new diffusion latents, new random seeds — and keeps the one they like best. This
baseline does exactly that, behind the ranking contract:

* round 1 shows ``m`` fresh samples from the prior N(mean, σ² I);
* every later round shows the incumbent (the best so far) in row 0 — ``incumbent_index == 0`` —
  and ``m − 1`` fresh samples in rows ``1..m−1``;
* the candidate ranked first becomes ``x``. Ties change nothing: when the first is tied with
  others, the first as told (``ranking[0]``) is taken. "None of these is better than the current
  one" is the ranking ``(0,)``: ``x`` stays.

So ``x`` never gets worse under a consistent judge, but the search never moves *toward* anything:
each fresh sample is independent of everything told so far. ``mean`` defaults to zeros, like fresh
diffusion latents; ``x0`` only fixes the shape, device and dtype and is the iterate reported until
the first ranking arrives (it is not shown: a user without us has no starting point either).

Randomness: the optimizer's CPU generator draws one 63-bit seed per round; the samples are drawn
on ``x0``'s device from a generator seeded with it, so a pending round can be regenerated.
"""

from __future__ import annotations

from typing import Any

import torch

from labkit._checks import check_positive, integer
from labkit.optim.base import (
    RankOptimizer,
    as_start_point,
    atomic_load,
    device_normal,
    restored,
)
from labkit.ranking import Ranking, Ties

__all__ = ["PriorSampling"]


class PriorSampling(RankOptimizer):
    """Best-of-fresh-samples baseline: the incumbent plus new draws from N(mean, σ² I) each round.

    Args:
        x0: the initial iterate, any shape; its device and floating dtype are the optimizer's.
        sigma: standard deviation σ of the prior (> 0).
        m: candidates per round (≥ 2, so that a round after the first holds a fresh sample).
        seed: seed of the optimizer's own CPU generator (``None``: from the OS).
        mean: the prior mean, a tensor or array of ``x0``'s shape; ``None`` means zeros.
        generator: a CPU ``torch.Generator`` to use instead of ``seed``.

    ``ask()`` returns an ``m × *x0.shape`` tensor on ``x0``'s device.
    """

    def __init__(
        self,
        x0: Any,
        *,
        sigma: float = 1.0,
        m: int = 8,
        seed: int | None = 0,
        mean: Any = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self._x = as_start_point(x0)
        self.sigma = check_positive("sigma", sigma)
        m_int = integer(m)
        if m_int is None or m_int < 2:
            raise ValueError(
                f"m must be an int >= 2 (the incumbent plus at least one fresh sample); got {m!r}"
            )
        self.m: int = m_int
        self.mean = self._check_mean(mean)
        self._init_randomness(seed=seed, generator=generator)

    def _check_mean(self, mean: Any) -> torch.Tensor:
        """The prior mean as a tensor of x's shape, device and dtype; refuses non-finite ones."""
        x = self._x
        if mean is None:
            return torch.zeros_like(x)
        try:
            t = torch.as_tensor(mean).detach().to(device=x.device, dtype=x.dtype)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"mean must be a tensor or an array of numbers; got {mean!r}") from err
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(
                f"mean must have the shape of x0, {tuple(x.shape)}; got {tuple(t.shape)}"
            )
        if not bool(torch.isfinite(t).all()):  # once, at construction
            raise ValueError("mean must be finite; it has a NaN or infinite entry")
        return t.clone()

    @property
    def x(self) -> torch.Tensor:
        """The incumbent (``x0`` before the first ranking), shape of ``x0``."""
        return self._x

    @property
    def incumbent_index(self) -> int | None:
        """0 once a first round has been ranked (the incumbent leads every later round)."""
        return 0 if self.rounds > 0 else None

    def _ask(self) -> torch.Tensor:
        """Rows of the pending round from its seed: [incumbent,] then fresh samples mean + σ z."""
        x = self._x
        with_incumbent = self.rounds > 0
        fresh = self.m - 1 if with_incumbent else self.m
        seed = self._pending_round_seed()
        z = device_normal(seed, (fresh, *x.shape), device=x.device, dtype=x.dtype)
        samples = self.mean + self.sigma * z
        return torch.cat([x.unsqueeze(0), samples]) if with_incumbent else samples

    def _tell(self, ranking: Ranking, ties: Ties) -> None:
        assert self._pending is not None
        # Only the best counts; ties among the best leave it to ranking[0] (module docstring).
        self._x = self._pending[ranking[0]].clone()
        self._round_seed = None

    def state_dict(self) -> dict[str, Any]:
        """Incumbent, prior, generator state, the pending round's seed (or ``None``), counters."""
        return {
            **self._state_head(tuple(self._x.shape), self.m),
            "x": self._x.clone(),
            "mean": self.mean.clone(),
            "sigma": self.sigma,
        }

    @atomic_load
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`; a pending round is regenerated from its seed."""
        self._load_state_head(state, tuple(self._x.shape), self.m)
        self._x = restored(state["x"], self._x)
        self.mean = self._check_mean(state["mean"])
        self.sigma = float(state["sigma"])
        if self._round_seed is not None:
            self._pending = self._ask()
