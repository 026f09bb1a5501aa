"""Thompson sampling from a Bradley–Terry model of every comparison told so far.

ZO-RankSGD turns one round's ranking into one direction and forgets it; a person's rankings are
scarce, so this optimizer keeps them all. Its theory, with the symbols used in the code:

**The model.** A person prefers candidate x_i to x_j with probability σ(u(x_i) − u(x_j)), σ the
logistic function (Bradley–Terry), for a utility u(x) = wᵀφ(x) linear in features φ. Every edge
(i beats j) of every round's ranking graph (:func:`labkit.ranking.graph_edges`: tied candidates
share no edge; "none of these is better than the current one" is the ranking of the incumbent
alone, so it beats every other candidate) is one observation with feature difference
Δ = φ(x_i) − φ(x_j). With a Gaussian prior w ~ N(0, λ⁻¹ I) (``prior`` = λ), the posterior of w is
approximated by Laplace's method: its mode ŵ (``w``) minimizes

    λ/2 ‖w‖² + Σ_e ω_e · log(1 + exp(−Δ_eᵀ w))

(a few Newton steps from the last mode), and its covariance is Σ = H⁻¹ (``cov``), the inverse
Hessian H = λI + Σ_e ω_e s_e(1 − s_e) Δ_e Δ_eᵀ, s_e = σ(Δ_eᵀ ŵ). ω_e = γ^age (``forget`` = γ)
down-weights older rounds (γ = 1: all rounds count alike).

**The rounds.** Row 0 is the incumbent x (the candidate ranked first last time; ``x0`` at the
start), so the person never loses the best they have seen and can say "none is better". Rows
1..m−1 are Thompson samples: w̃ = ŵ + κ ε, ε ~ N(0, Σ) (``explore`` = κ), each turned into the
point that is best for w̃. Early on Σ = λ⁻¹ I dominates and the samples are spread like fresh
draws; as comparisons accumulate Σ shrinks around ŵ and the rounds concentrate where the person
has been pointing, while still trying the directions the model is unsure of (Thompson sampling's
exploration, in proportion to the remaining uncertainty).

**Geometries** (what "best for w̃" means):

* ``"sphere"`` (latents of a diffusion model): φ(x) = x/‖x‖ and the candidate is
  R·w̃/‖w̃‖, R = ``scale``·√d, the radius where N(0, scale² I) puts its mass. The utility of a
  direction z is then wᵀz/‖z‖: the person's target latent direction z* has the highest, and
  nearby directions rank by their angle to it, so a linear model is right *globally* on the
  sphere, not only near x.
* ``"local"`` (parameters without such a prior: a point on a map, a policy): φ(x) = x/(scale·√d)
  and the candidate is x + r·w̃/‖w̃‖, a step of radius r (``radius``·scale·√d at first) in the
  sampled direction. The linear model only holds near x, so γ < 1 forgets far-away rounds, and r
  adapts to how often the incumbent wins: ×``grow`` when a new candidate is ranked first (the
  steps are not too long), ×``shrink`` when the incumbent wins (they are). This is the 1/5-th
  success rule of evolution strategies, aimed by the preference model instead of at random.

**Cost.** The model lives on the CPU in float64 (d ≤ ``MAX_DIM``): a d×d Cholesky per round and
a few d×d solves per ``tell``, ~5 ms for d = 256. Each round moves its candidates to the
device once. Randomness: one seed per round from the optimizer's generator; the draws and the
fit are deterministic on the CPU, so a replay gives the same iterate bit for bit.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from labkit._checks import check_positive, integer
from labkit.optim.base import RankOptimizer, as_start_point, atomic_load
from labkit.ranking import Ranking, Ties, graph_edges

__all__ = ["MAX_DIM", "PreferenceThompson"]

#: Largest d the model handles (its covariance is a d×d float64 matrix: 128 MiB at 4096).
MAX_DIM = 4096
_NEWTON_STEPS = 20
_NEWTON_TOL = 1e-6

Geometry = Literal["sphere", "local"]


def laplace_fit(
    D: torch.Tensor, omega: torch.Tensor, prior: float, w0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Laplace approximation of a Bradley–Terry posterior: Newton steps from ``w0`` to the mode
    ŵ of λ/2 ‖w‖² + Σ_e ω_e log(1 + exp(−Δ_eᵀ w)), then Σ = H⁻¹; returns (ŵ, Σ).

    ``D`` holds the feature differences Δ_e (n × k, n ≥ 1), ``omega`` their weights ω_e, ``prior``
    is λ. Newton from the last mode converges in 2–4 steps (one round adds few comparisons); the
    Cholesky factor of the last Hessian solves each step and, once the step is negligible
    (≤ 1e-6·‖ŵ‖), gives Σ without another k×k build.
    """
    w = w0.clone()
    for _ in range(_NEWTON_STEPS):
        s = torch.sigmoid(D @ w)
        grad = prior * w - D.T @ (omega * (1.0 - s))
        H = (D.T * (omega * s * (1.0 - s))) @ D
        H.diagonal().add_(prior)  # H = λI + Σ_e ω_e s_e(1 − s_e) Δ_e Δ_eᵀ
        L = torch.linalg.cholesky(H)  # H is positive definite: λI plus a Gram matrix
        step = torch.cholesky_solve(grad.unsqueeze(1), L).squeeze(1)
        w = w - step
        if float(step.norm()) <= _NEWTON_TOL * (1.0 + float(w.norm())):
            break
    cov = torch.cholesky_inverse(L)
    return w, 0.5 * (cov + cov.T)  # exactly symmetric for the next round's Cholesky


class PreferenceThompson(RankOptimizer):
    """Rounds drawn from a Bradley–Terry model of every ranking so far (see the module docstring).

    Args:
        x0: the start, any shape with d ≤ :data:`MAX_DIM` entries; shown as row 0 of the first
            round. Its device and floating dtype are the candidates'.
        m: candidates per round (≥ 2): the incumbent and m − 1 samples.
        scale: the typical size of one entry of x (a latent's prior standard deviation).
        geometry: ``"sphere"`` or ``"local"`` (module docstring).
        prior: λ, the precision of the prior on the utility's weights.
        explore: κ, how far Thompson samples reach beyond the posterior (1: the posterior itself).
        radius: ``"local"`` only: the first step radius in units of scale·√d.
        grow, shrink: ``"local"`` only: the radius factors after a new best / the incumbent won.
        forget: γ in (0, 1], the weight of a comparison per round of age.
        seed / generator: the source of all randomness (give one or the other).
    """

    def __init__(
        self,
        x0: Any,
        *,
        m: int = 8,
        scale: float = 1.0,
        geometry: Geometry = "sphere",
        prior: float = 1.0,
        explore: float = 0.25,
        radius: float = 0.5,
        grow: float = 1.3,
        shrink: float = 0.7,
        forget: float = 1.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        x = as_start_point(x0)
        self.shape: tuple[int, ...] = tuple(x.shape)
        self.device, self.dtype = x.device, x.dtype
        self.d = x.numel()
        if self.d > MAX_DIM:
            raise ValueError(
                f"PreferenceThompson keeps a d×d covariance and takes d <= {MAX_DIM}; x0 has "
                f"d = {self.d} (use ZORankSGD for larger x)"
            )
        m_int = integer(m)
        if m_int is None or m_int < 2:
            raise ValueError(f"m must be an int >= 2 (the incumbent and a sample); got {m!r}")
        self.m: int = m_int
        self.k: int = m_int  # a full ranking is asked for; any 1..m is used
        if geometry not in ("sphere", "local"):
            raise ValueError(f"geometry must be 'sphere' or 'local'; got {geometry!r}")
        self.geometry: str = geometry
        self.scale = check_positive("scale", scale)
        self.prior = check_positive("prior", prior)
        self.explore = check_positive("explore", explore)
        self.radius0 = check_positive("radius", radius)
        self.grow = check_positive("grow", grow)
        self.shrink = check_positive("shrink", shrink)
        self.forget = check_positive("forget", forget)
        if self.forget > 1:
            raise ValueError(f"forget must be in (0, 1]; got {forget!r}")
        self._init_randomness(seed=seed, generator=generator)

        self._x = x.reshape(-1).to("cpu", torch.float64)  # the incumbent x, float64 on the CPU
        self._unit = self.scale * math.sqrt(self.d)  # scale·√d: R, and the unit of "local"
        self._radius = self.radius0 * self._unit  # r ("local")
        self._w = torch.zeros(self.d, dtype=torch.float64)  # ŵ
        self._cov = torch.eye(self.d, dtype=torch.float64) / self.prior  # Σ
        self._deltas = torch.zeros(0, self.d, dtype=torch.float64)  # Δ_e, one row per edge
        self._ages = torch.zeros(0, dtype=torch.float64)  # rounds since each edge was told
        self._rows: torch.Tensor | None = None  # the pending round, float64 on the CPU
        self.last_step: float = 0.0  # ‖x_new − x‖ of the last move (0: the incumbent won)

    # -- views --------------------------------------------------------------------------------
    @property
    def x(self) -> torch.Tensor:
        """The incumbent: the candidate ranked first last (``x0`` before any ranking)."""
        return self._x.to(self.device, self.dtype).view(self.shape)

    @property
    def incumbent_index(self) -> int:
        """Row 0 of every round is the incumbent."""
        return 0

    @property
    def round_kind(self) -> str:
        return "preference"

    @property
    def w(self) -> torch.Tensor:
        """ŵ, the posterior mode of the utility's weights (float64, CPU)."""
        return self._w.clone()

    # -- geometry -----------------------------------------------------------------------------
    def _features(self, X: torch.Tensor) -> torch.Tensor:
        if self.geometry == "sphere":
            return X / X.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return X / self._unit

    def _points(self, W: torch.Tensor) -> torch.Tensor:
        """The best point for each sampled weight vector (rows of W)."""
        U = W / W.norm(dim=1, keepdim=True).clamp_min(1e-300)
        if self.geometry == "sphere":
            return self._unit * U
        return self._x + self._radius * U

    # -- ask / tell ---------------------------------------------------------------------------
    def _thompson_points(self, n: int, g: torch.Generator) -> torch.Tensor:
        """n Thompson points: the best point for each of n samples w̃ = ŵ + κ L ε."""
        eps = torch.randn(n, self.d, generator=g, dtype=torch.float64)
        # w̃ = ŵ + κ L ε with Σ = L Lᵀ: Thompson samples of the posterior, widened by κ.
        L = torch.linalg.cholesky(self._cov)
        return self._points(self._w + self.explore * (eps @ L.T))

    def _ask(self) -> torch.Tensor:
        g = torch.Generator(device="cpu").manual_seed(self._pending_round_seed())
        rows = torch.cat([self._x.unsqueeze(0), self._thompson_points(self.m - 1, g)])
        self._rows = rows
        return rows.to(self.device, self.dtype).view(self.m, *self.shape)

    def _tell(self, ranking: Ranking, ties: Ties) -> None:
        rows = self._rows
        assert rows is not None
        edges = graph_edges(self.m, ranking, ties)
        phi = self._features(rows)
        if edges:
            win = torch.tensor([i for i, _ in edges])
            lose = torch.tensor([j for _, j in edges])
            self._deltas = torch.cat([self._deltas, phi[win] - phi[lose]])
            self._ages = torch.cat([self._ages + 1, torch.zeros(len(edges), dtype=torch.float64)])
        else:
            self._ages = self._ages + 1
        self._fit()
        best = ranking[0]
        new_x = rows[best].clone()
        self.last_step = float((new_x - self._x).norm())
        if self.geometry == "local":
            self._radius *= self.shrink if best == 0 else self.grow
        self._x = new_x
        self._round_seed = None
        self._rows = None

    def _fit(self) -> None:
        """The posterior of every comparison so far (:func:`laplace_fit`), from the last mode."""
        D = self._deltas
        if D.shape[0] == 0:
            self._w.zero_()
            self._cov = torch.eye(self.d, dtype=torch.float64) / self.prior
            return
        omega = self.forget**self._ages  # ω_e = γ^age
        self._w, self._cov = laplace_fit(D, omega, self.prior, self._w)

    # -- state --------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "m": self.m,
            "scale": self.scale,
            "geometry": self.geometry,
            "prior": self.prior,
            "explore": self.explore,
            "radius": self.radius0,
            "grow": self.grow,
            "shrink": self.shrink,
            "forget": self.forget,
            "dtype": str(self.dtype),
        }

    def state_dict(self) -> dict[str, Any]:
        """The incumbent, every comparison, the posterior, the generator and the round."""
        return {
            **self._state_head(self.shape, self.m, self._config()),
            "x": self._x.clone(),
            "w": self._w.clone(),
            "cov": self._cov.clone(),
            "deltas": self._deltas.clone(),
            "ages": self._ages.clone(),
            "radius": self._radius,
            "last_step": self.last_step,
            "pending": self.pending,
        }

    @atomic_load
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output; the config must match this optimizer's."""
        self._load_state_head(state, self.shape, self.m, self._config())
        self._x = state["x"].to("cpu", torch.float64).clone()
        self._w = state["w"].to("cpu", torch.float64).clone()
        self._cov = state["cov"].to("cpu", torch.float64).clone()
        self._deltas = state["deltas"].to("cpu", torch.float64).clone()
        self._ages = state["ages"].to("cpu", torch.float64).clone()
        self._radius = float(state["radius"])
        self.last_step = float(state["last_step"])
        self._rows = None
        self._pending = self._ask() if state["pending"] else None
