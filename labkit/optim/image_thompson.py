"""Thompson sampling with a second Bradley–Terry model: one over the images the person saw.

:class:`~labkit.optim.PreferenceThompson` models the person's preference as a linear function of
the *latent's* direction. A person ranks *images*, and the generator bends latent space: two
latents at a small angle can draw different digits, two far apart the same one. This optimizer
keeps that latent model (it proposes) and adds a model of what the person saw (it chooses).
Symbols as in :mod:`labkit.optim.preference`, with a prime for the image model:

**The image model.** ψ(x) is the rendered image of latent x (``view``), flattened, centred and
scaled to unit norm, so that brightness and ink do not dominate. The person prefers x_i to x_j
with probability σ(w′ᵀ(ψ(x_i) − ψ(x_j))), w′ ~ N(0, λ′⁻¹ I) (``look_prior`` = λ′), fitted to every
edge of every round's ranking graph like the latent model (:func:`~labkit.optim.preference.
laplace_fit`: mode ŵ′, covariance Σ′). An edge costs nothing extra: the rows were rendered to be
shown.

**A round.** Row 0 is the incumbent. Rows 1..m−1 are chosen from a *pool* of P = ``pool``
Thompson points of the latent model (R·w̃/‖w̃‖, w̃ = ŵ + κ L ε, as :class:`PreferenceThompson`
draws its rows), rendered: each row is the pool member that is best for its own Thompson sample
w̃′ = ŵ′ + κ′ L′ε of the image model (``look_explore`` = κ′, Σ′ = L′L′ᵀ), none twice. So the
latent model says *where* to look and the image model which of its proposals the person would
like, from what they liked so far. The first round shows x0 and the m − 1 of ``pool`` prior
samples whose images are farthest from x0's and from each other (greedy farthest point), so the
first ranking compares looks the model can draw, not near-twins.

**Only the first rounds.** The image model's utility is linear in the (normalized) image, while
the person's distance to what they picture is not: it finds the right *kind* of image within a
few rounds and then stalls, where the latent model, told every round, keeps refining. So it
chooses the rows of the first ``look_rounds`` rounds only (the first round included); from then
on a round is :class:`PreferenceThompson`'s own (the incumbent and m − 1 Thompson points), with
no pool and no render beyond the round's.

**Chosen on train targets** (``benchmarks/steer_variants.py``, 16 targets of the digits model's
training split, the ``pl`` person; docs/benchmarks.md "Steering"): with ``look_rounds`` = 3 the
target was matched by round 3 on 8 of 16 (the latent model alone: 5), and on every target
within 30 rounds; choosing every round's rows, or drawing a quarter of the pool from the prior,
or drawing the pool a round ahead (to render it while the person ranks) left targets unmatched.

**Cost.** ``pool`` + 1 renders in the first round and ``pool`` in each of the next
``look_rounds`` − 1 (≈ 1.5 s for 64 digits on one CPU core), none after; two Laplace fits per
``tell`` while the image model chooses (d×d and f×f, f the pixels of an image, float64 on the CPU,
a few ms each at d = f = 256). Randomness as in :class:`PreferenceThompson`: a replay renders
the same pools and draws the same rounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from labkit._checks import check_positive, integer
from labkit.optim.base import atomic_load
from labkit.optim.preference import PreferenceThompson, laplace_fit
from labkit.ranking import Ranking, Ties, graph_edges

__all__ = ["ImageThompson"]

View = Callable[[torch.Tensor], torch.Tensor]


def _farthest(F: torch.Tensor, start: torch.Tensor, n: int) -> list[int]:
    """Greedy farthest point: n rows of ``F`` far from ``start`` and from each other."""
    chosen: list[int] = []
    dmin = (F - start).norm(dim=1)
    for _ in range(n):
        j = int(dmin.argmax())
        chosen.append(j)
        dmin = torch.minimum(dmin, (F - F[j]).norm(dim=1))
    return chosen


def _thompson_picks(
    F: torch.Tensor,
    w: torch.Tensor,
    cov: torch.Tensor,
    kappa: float,
    n: int,
    g: torch.Generator,
    exclude: set[int] | None = None,
) -> list[int]:
    """Rows of ``F`` (candidates' features) best for n Thompson samples w̃ = w + κ L ε of a
    Bradley–Terry model (Σ = ``cov`` = L Lᵀ), none in ``exclude`` and none twice."""
    eps = torch.randn(n, F.shape[1], generator=g, dtype=torch.float64)
    L = torch.linalg.cholesky(cov)
    U = F @ (w + kappa * (eps @ L.T)).T  # utilities, (candidates, n)
    if exclude:
        U[torch.tensor(sorted(exclude))] = -math.inf
    chosen: list[int] = []
    for i in range(n):
        u = U[:, i].clone()
        if chosen:
            u[torch.tensor(chosen)] = -math.inf
        chosen.append(int(u.argmax()))
    return chosen


class ImageThompson(PreferenceThompson):
    """PreferenceThompson whose rows an image model picks from a rendered pool (module docstring).

    Args:
        x0: the start, on the prior's sphere's scale (a latent); d ≤ :data:`MAX_DIM`.
        view: renders candidates: ``(n, *x0.shape)`` on x0's device and dtype → ``(n, …)``
            images (any shape, any scale: they are flattened, centred and normalized). A
            task's ``images`` method, for instance :meth:`labkit.tasks.DigitsTask.images`.
        pool: P, the Thompson points of the latent model the image model chooses from (≥ m − 1).
        look_prior: λ′, the precision of the image model's prior.
        look_explore: κ′, how far the image model's Thompson samples reach.
        look_rounds: the rounds whose rows the image model chooses, the first included; the
            latent model alone draws the later ones (module docstring).
        m, scale, prior, explore, seed, generator: as for :class:`PreferenceThompson` (its
            ``"sphere"`` geometry: candidates are latents of the prior's scale).
    """

    def __init__(
        self,
        x0: Any,
        *,
        view: View,
        pool: int = 64,
        look_prior: float = 1.0,
        look_explore: float = 0.3,
        look_rounds: int = 3,
        m: int = 8,
        scale: float = 1.0,
        prior: float = 1.0,
        explore: float = 0.25,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            x0,
            m=m,
            scale=scale,
            geometry="sphere",
            prior=prior,
            explore=explore,
            seed=seed,
            generator=generator,
        )
        if not callable(view):
            raise ValueError(f"view must render candidates to images (a callable); got {view!r}")
        self.view = view
        p = integer(pool)
        if p is None or p < self.m - 1:
            raise ValueError(f"pool must be an int >= m - 1 = {self.m - 1}; got {pool!r}")
        self.pool = p
        self.look_prior = check_positive("look_prior", look_prior)
        self.look_explore = check_positive("look_explore", look_explore)
        r = integer(look_rounds)
        if r is None or r < 1:
            raise ValueError(f"look_rounds must be an int >= 1; got {look_rounds!r}")
        self.look_rounds = r
        # The image model: its edges' feature differences Δ′, mode ŵ′ and covariance Σ′ (None:
        # no edge yet).
        self._look_deltas: torch.Tensor | None = None
        self._look_w: torch.Tensor | None = None
        self._look_cov: torch.Tensor | None = None
        self._x_look: torch.Tensor | None = None  # ψ(x) of the incumbent, once rendered
        self._row_look: torch.Tensor | None = None  # ψ of the pending round's rows

    # -- the image model ------------------------------------------------------------------------
    def _look(self, Z: torch.Tensor) -> torch.Tensor:
        """ψ of latents Z (float64 CPU rows): rendered by ``view`` in one call, flattened,
        centred and unit-norm."""
        with torch.no_grad():
            images = self.view(Z.to(self.device, self.dtype).view(-1, *self.shape))
        if not isinstance(images, torch.Tensor) or images.shape[0] != Z.shape[0]:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"view must return one image per candidate ({Z.shape[0]}); got {got}")
        F = images.detach().reshape(Z.shape[0], -1).to("cpu", torch.float64)
        F = F - F.mean(dim=1, keepdim=True)
        return F / F.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def _look_picks(self, F: torch.Tensor, n: int, g: torch.Generator) -> list[int]:
        """Rows of ``F`` (ψ of the candidates) best for n Thompson samples of the image model."""
        assert self._look_w is not None and self._look_cov is not None
        return _thompson_picks(F, self._look_w, self._look_cov, self.look_explore, n, g)

    def _prior_points(self, n: int, g: torch.Generator) -> torch.Tensor:
        """n prior samples, on the sphere of radius R like every other candidate."""
        Z = torch.randn(n, self.d, generator=g, dtype=torch.float64)
        return self._unit * Z / Z.norm(dim=1, keepdim=True).clamp_min(1e-300)

    # -- ask / tell -----------------------------------------------------------------------------
    def _ask(self) -> torch.Tensor:
        self._row_look = None
        if self.rounds >= self.look_rounds:  # the latent model alone from here on
            return super()._ask()
        g = torch.Generator(device="cpu").manual_seed(self._pending_round_seed())
        n = self.m - 1
        if self.rounds == 0 or self._x_look is None:
            # The first round: looks spread over what the model draws.
            Z = self._prior_points(self.pool, g)
            F = self._look(torch.cat([self._x.unsqueeze(0), Z]))
            self._x_look, F = F[0], F[1:]
            picks = _farthest(F, self._x_look, n)
        elif self._look_w is None:  # no comparison to learn from yet (every row tied)
            Z = self._thompson_points(n, g)
            F = self._look(Z)
            picks = list(range(n))
        else:
            Z = self._thompson_points(self.pool, g)
            F = self._look(Z)
            picks = self._look_picks(F, n, g)
        chosen = torch.tensor(picks)
        self._rows = torch.cat([self._x.unsqueeze(0), Z[chosen]])
        self._row_look = torch.cat([self._x_look.unsqueeze(0), F[chosen]])
        return self._rows.to(self.device, self.dtype).view(self.m, *self.shape)

    def _tell(self, ranking: Ranking, ties: Ties) -> None:
        F = self._row_look
        edges = graph_edges(self.m, ranking, ties)
        if F is not None and edges:
            D = F[[i for i, _ in edges]] - F[[j for _, j in edges]]  # Δ′ = ψ(x_i) − ψ(x_j)
            old = self._look_deltas
            self._look_deltas = D if old is None else torch.cat([old, D])
            w0 = self._look_w if self._look_w is not None else torch.zeros(D.shape[1])
            ones = torch.ones(self._look_deltas.shape[0], dtype=torch.float64)
            self._look_w, self._look_cov = laplace_fit(
                self._look_deltas, ones, self.look_prior, w0.to(torch.float64)
            )
        if F is not None:
            self._x_look = F[ranking[0]].clone()
        super()._tell(ranking, ties)
        self._row_look = None

    # -- state ----------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "pool": self.pool,
            "look_prior": self.look_prior,
            "look_explore": self.look_explore,
            "look_rounds": self.look_rounds,
        }

    def state_dict(self) -> dict[str, Any]:
        """PreferenceThompson's state, the image model and ψ of the incumbent (no render: a
        pending round's pool is drawn and rendered again from the round's seed)."""

        def copy(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.clone()

        return {
            **super().state_dict(),
            "look_deltas": copy(self._look_deltas),
            "look_w": copy(self._look_w),
            "look_cov": copy(self._look_cov),
            "x_look": copy(self._x_look),
        }

    @atomic_load
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output; the config must match this optimizer's."""

        def cpu(t: Any) -> torch.Tensor | None:
            return None if t is None else t.to("cpu", torch.float64).clone()

        pending = bool(state["pending"])
        # The parent re-asks a pending round: restore what that ask reads first.
        self._look_deltas = cpu(state["look_deltas"])
        self._look_w = cpu(state["look_w"])
        self._look_cov = cpu(state["look_cov"])
        self._x_look = cpu(state["x_look"])
        self._row_look = None
        # The parent's own load (not its all-or-nothing wrapper: this one's covers both).
        PreferenceThompson.load_state_dict.__wrapped__(self, {**state, "pending": False})  # type: ignore[attr-defined]
        if pending:
            self._pending = self._ask()
