"""Value-based two-point ZO-SGD: the baseline that sees numbers, not rankings.

Each round draws ``h = m / 2`` Gaussian directions ``u_i ~ N(0, I)`` and shows the pairs

    row i       :  x + μ u_i        (i = 0 .. h−1)
    row h + i   :  x − μ u_i

Told the objective values (lower is better) through :meth:`ZOSGD.tell_values`, it forms the
two-point (central difference) gradient estimate and takes a step

    g = (1/h) Σ_i  (f(x + μu_i) − f(x − μu_i)) / (2μ) · u_i,        x ← x − lr · g.

``E[g]`` is the gradient of the Gaussian smoothing f_μ(x) = E f(x + μu) (for a linear f, exactly
the gradient of f), so this is plain SGD on f_μ (Nesterov & Spokoiny 2017; the ZO-SGD baseline of
the ZO-RankSGD paper).

To honour the ranking contract, :meth:`ZOSGD.tell` also accepts a ranking and feeds the rank
positions in as pseudo-values (ranked position p -> p, the unranked tied at k; candidates told
tied share the position of the first of their group, as equal values would). That is a
*rank-transformed* variant, not the value baseline: the step then measures differences in rank
units, so ``lr`` has to be chosen for that scale. Benchmarks comparing against "ZO-SGD" should
call :meth:`ZOSGD.tell_values`.

Randomness: the optimizer's CPU generator draws one 63-bit seed per round; the directions are
drawn from a generator on ``x0``'s device seeded with it, so the candidates are made where they
are used and a round can be regenerated from its seed (that is how a pending round is restored).
"""

from __future__ import annotations

from collections.abc import Sequence
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

__all__ = ["ZOSGD"]


class ZOSGD(RankOptimizer):
    """Two-point zeroth-order SGD with ``m / 2`` Gaussian directions per round.

    Args:
        x0: starting point, any shape; its device and floating dtype are the optimizer's.
        lr: step size (> 0).
        mu: smoothing radius μ (> 0): candidates are ``x ± μ u``.
        m: candidates per round, an even number ≥ 2 (they come in ± pairs).
        seed: seed of the optimizer's own CPU generator (``None``: from the OS).
        generator: a CPU ``torch.Generator`` to use instead of ``seed``.

    ``ask()`` returns an ``m × *x0.shape`` tensor on ``x0``'s device: rows ``0..m/2−1`` are
    ``x + μu_i`` and rows ``m/2..m−1`` the mirrored ``x − μu_i``.
    """

    def __init__(
        self,
        x0: Any,
        *,
        lr: float,
        mu: float,
        m: int = 8,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self._x = as_start_point(x0)
        self.lr = check_positive("lr", lr)
        self.mu = check_positive("mu", mu)
        m_int = integer(m)
        if m_int is None or m_int < 2 or m_int % 2:
            raise ValueError(
                f"m must be an even int >= 2, since candidates come in pairs x + μu, x − μu; "
                f"got m={m!r}"
            )
        self.m: int = m_int
        self._init_randomness(seed=seed, generator=generator)
        self._u: torch.Tensor | None = None  # (m/2, *shape) directions of the pending round

    @property
    def x(self) -> torch.Tensor:
        """The current iterate, shape of ``x0``, on its device and dtype."""
        return self._x

    # -- ask ----------------------------------------------------------------------------------
    def _ask(self) -> torch.Tensor:
        """Directions of the pending round from its seed, and the ``m`` candidates ``x ± μu``."""
        x = self._x
        self._u = device_normal(
            self._pending_round_seed(), (self.m // 2, *x.shape), device=x.device, dtype=x.dtype
        )
        step = self.mu * self._u
        return torch.cat([x + step, x - step])

    # -- tell ---------------------------------------------------------------------------------
    def tell_values(self, values: Sequence[float] | torch.Tensor) -> None:
        """Tell the objective values of the pending round (lower is better) and take a step.

        ``values`` is an ``(m,)`` tensor or sequence of finite numbers, one per row of ``ask()``.
        Raises ``ValueError`` and changes nothing when no round is pending or ``values`` has the
        wrong shape or a non-finite entry. The finiteness check costs one host sync per round.
        """
        if self._pending is None:
            raise ValueError("tell_values() needs a pending round: call ask() first")
        if isinstance(values, torch.Tensor) and (
            values.dtype == torch.bool or values.dtype.is_complex
        ):
            raise ValueError(f"values must be real numbers; got a tensor of dtype {values.dtype}")
        try:
            v = torch.as_tensor(values, dtype=self._x.dtype, device=self._x.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"values must be {self.m} numbers; got {values!r}") from err
        if tuple(v.shape) != (self.m,):
            raise ValueError(
                f"values must have shape ({self.m},), one per candidate; got {tuple(v.shape)}"
            )
        finite = torch.isfinite(v)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            raise ValueError(f"values must be finite; values[{bad}] = {float(v[bad])}")
        self._step(v)
        self._pending = None
        self.rounds += 1

    def _tell(self, ranking: Ranking, ties: Ties) -> None:
        # Rank-transformed variant (see the module docstring): position p -> p, unranked -> k,
        # a tied position -> the position of the first of its group.
        x = self._x
        k = len(ranking)
        positions = list(range(k))
        for p in ties:  # ascending, so positions[p - 1] is already its group's first
            positions[p] = positions[p - 1]
        pseudo = torch.full((self.m,), float(k), dtype=x.dtype, device=x.device)
        index = torch.tensor(ranking, dtype=torch.long, device=x.device)
        pseudo[index] = torch.tensor(positions, dtype=x.dtype).to(x.device)
        self._step(pseudo)

    def _step(self, values: torch.Tensor) -> None:
        """x ← x − lr · (1/h) Σ_i (v_i⁺ − v_i⁻)/(2μ) u_i, for the (m,) values of the round."""
        assert self._u is not None
        h = self.m // 2
        coeff = (values[:h] - values[h:]) / (2.0 * self.mu)  # (h,)
        g = torch.tensordot(coeff, self._u, dims=1) / h  # (*shape)
        self._x = self._x - self.lr * g
        self._u = None
        self._round_seed = None

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Iterate, generator state, the pending round's seed (or ``None``) and the counters."""
        return {
            **self._state_head(tuple(self._x.shape), self.m),
            "x": self._x.clone(),
            "lr": self.lr,
            "mu": self.mu,
        }

    @atomic_load
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`; a pending round is regenerated from its seed."""
        self._load_state_head(state, tuple(self._x.shape), self.m)
        self._x = restored(state["x"], self._x)
        self.lr = float(state["lr"])
        self.mu = float(state["mu"])
        self._u = None
        if self._round_seed is not None:
            self._pending = self._ask()
