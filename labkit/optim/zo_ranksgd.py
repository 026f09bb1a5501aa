"""ZO-RankSGD (Tang, Rybin & Chang, ICLR 2024, Algorithm 1) and its line-search rounds.

Symbols of the paper and their names here:

==========  ==================  ===========================================================
paper       code                meaning
==========  ==================  ===========================================================
x_t         ``self._x``         current iterate, flattened to (d,)
ξ_i         ``xi`` (tiles)      Gaussian direction of candidate i, ξ_i ~ N(0, I_d)
μ           ``mu``              smoothing radius: candidates are x + μ ξ_i
η           ``lr``              step size: x ← x − η g
m, k        ``m``, ``len(r)``   candidates per round, length of the ranking told
G = (V, E)  ``c`` (m,)          ranking graph, reduced to one coefficient per candidate
|E|         ``n_edges``         k(k−1)/2 + k(m−k) without ties (fewer with ties)
g           ``g``               (1/|E|) Σ_{(i,j)∈E} (ξ_j − ξ_i),  i beats j
==========  ==================  ===========================================================

**The estimator as one matrix-vector product.** Every edge (i beats j) adds ξ_j − ξ_i, so
candidate i enters the sum with coefficient c_i = (#edges it loses) − (#edges it wins).
For the candidate ranked at position p (0-based) of k ranked: it loses to the p ranked above it
and wins against the k−1−p ranked below and the m−k unranked, so c = p − (k−1−p) − (m−k)
= 2p + 1 − m. An unranked candidate loses to all k ranked ones and wins nothing: c = k.
Hence g = (1/|E|) cᵀ Ξ with Ξ the m × d matrix of directions; Σ_i c_i = 0 (every edge adds
+1 and −1), so a constant shift of all directions changes nothing, as it must.

**Ties.** A tie (``tell(ranking, ties=...)``) removes the edges between the tied candidates: a
tied group spanning positions [s, e) of the ranking gets c = s − (k − e) − (m − k) for each of its
members, the mean of what they would get untied, and |E| shrinks by size·(size − 1)/2 per group
(:func:`labkit.ranking.graph_coefficients`, where the graph is built). A gradient round whose
answer has no edge at all (a full ranking, every candidate tied) carries no direction: x does not
move, and with line-search rounds no line search follows and ĝ is left as it was; the next round
is a new gradient round. A line-search round only uses ``ranking[0]`` (ties there change nothing).

**Line-search rounds** (the paper's variant for people in the loop). With ``line_search=n > 0``
rounds alternate: a *gradient round* shows the m perturbed points x + μξ_i and only estimates g
(x does not move); the following *line-search round* shows, in this row order,

    row 0          x                        (the incumbent; ``incumbent_index == 0``)
    row 1          x + μ ξ_best             (the previous round's winner)
    row 2 + i      x − η 2^−i ĝ,  i=0..n−1  (steps along the accumulated estimate ĝ)

and the winner (``ranking[0]``) becomes the iterate. ĝ is the running mean of the gradient
estimates since the last move: when the incumbent wins, x stays and the next gradient round's
estimate is averaged in ("the directions keep accumulating"), which lowers the estimator's
variance exactly when the last direction was not good enough; any other winner resets it.

**Memory: tiles and regeneration.** The directions are drawn tile by tile, each tile from its
own seed derived from the round's seed, so the same numbers can be drawn again later. With
``regenerate=False`` Ξ is kept between ``ask`` and ``tell`` (one draw of m·d numbers per round,
m·d extra floats). With ``regenerate=True`` only the round's seed is kept, and ``tell`` draws the
tiles again, one scratch tile at a time, while accumulating g in place: memory stays x + g + one
tile whatever m is, at the price of a second draw of m·d numbers (+19–28 % CPU time, see
docs/benchmarks.md). A tile holds at most 2²² numbers, so for d ≥ 2²² that is ≤ 3·d floats.
Both modes perform the same operations on the same numbers and give bit-identical iterates;
``regenerate=None`` switches regeneration on when the stored Ξ would hold ≥ 2**25 numbers
(128 MiB in float32), e.g. d=10⁶ with m ≥ 34, or d=10⁷.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from labkit._checks import check_flag, check_positive, integer
from labkit.optim.base import RankOptimizer, as_start_point, atomic_load
from labkit.ranking import Ranking, Ties, graph_coefficients

__all__ = ["ZORankSGD"]

#: Numbers drawn per tile (4 Mi); a tile is whole rows when d is smaller, else part of one row.
_TILE = 1 << 22
#: Stored Ξ at or above this many numbers switches ``regenerate=None`` to regeneration.
_REGENERATE_AT = 1 << 25
_MASK64 = (1 << 64) - 1


def _mix(seed: int, index: int) -> int:
    """A 63-bit seed for tile ``index`` of a round (SplitMix64 finalizer, pure Python ints).

    Distinct tiles get unrelated streams; the result is a valid ``manual_seed`` on every device.
    """
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


class ZORankSGD(RankOptimizer):
    """Zeroth-order rank-based SGD: moves x toward the candidates that were ranked higher.

    Args:
        x0: starting point, any shape; a tensor keeps its device and (floating) dtype, anything
            else becomes a float32 CPU tensor. Must be finite.
        lr: step size η (> 0).
        mu: smoothing radius μ (> 0): candidates are x + μ ξ with ξ ~ N(0, I).
        m: candidates per gradient round (≥ 2).
        k: how many of them a judge is asked to rank (``None``: all m). A hint for user
            interfaces and judges (``opt.k``); ``tell`` accepts any ranking of length 1..m and
            builds the graph of the ranking it gets.
        seed / generator: the source of all randomness (a CPU generator; give one or the other).
        line_search: number n of step sizes η·2^−i (i = 0..n−1) in line-search rounds; 0 runs
            plain Algorithm 1 (every round is a gradient round and moves x).
        regenerate: keep Ξ (False), redraw it in ``tell`` (True) or decide by size (None).

    Example:
        >>> opt = ZORankSGD(torch.zeros(10), lr=0.1, mu=0.05, m=8, seed=0)
        >>> X = opt.ask()            # (8, 10)
        >>> opt.tell([3, 1, 0])      # top-3, best first
    """

    def __init__(
        self,
        x0: Any,
        *,
        lr: float,
        mu: float,
        m: int = 8,
        k: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        line_search: int = 0,
        regenerate: bool | None = None,
    ) -> None:
        super().__init__()
        x = as_start_point(x0)
        self.shape: tuple[int, ...] = tuple(x.shape)
        self._x = x.reshape(-1)
        self.d = self._x.numel()
        self.device = self._x.device
        self.dtype = self._x.dtype
        self.lr = check_positive("lr", lr)
        self.mu = check_positive("mu", mu)
        m_int, k_int, ls_int = integer(m), integer(k), integer(line_search)
        if m_int is None or m_int < 2:
            raise ValueError(f"m (candidates per round) must be an int >= 2; got {m!r}")
        self.m: int = m_int
        if k is not None and (k_int is None or not 1 <= k_int <= m_int):
            raise ValueError(f"k must be None (full ranking) or an int in 1..m={m}; got {k!r}")
        self.k: int = m_int if k_int is None else k_int
        if ls_int is None or ls_int < 0:
            raise ValueError(f"line_search must be an int >= 0 (0: off); got {line_search!r}")
        self.line_search: int = ls_int
        if regenerate is None:
            regenerate = self.m * self.d >= _REGENERATE_AT
        self.regenerate = check_flag("regenerate", regenerate)
        self._init_randomness(seed=seed, generator=generator)
        # The device generator is re-seeded per tile; it carries no state between tiles.
        self._dev_gen = torch.Generator(device=self.device)

        self._xi: torch.Tensor | None = None  # Ξ (m, d) while a round is pending (stored mode)
        self._acc: torch.Tensor | None = None  # ĝ, running mean of estimates since last move
        self._n_acc = 0
        self._winner: tuple[int, int] | None = None  # (round seed, row) of last round's best
        self.last_step: float = 0.0  # η·2^−i actually taken by the last move (0: none)

    # -- public views -------------------------------------------------------------------------
    @property
    def x(self) -> torch.Tensor:
        """The current iterate, shaped like x0 (a view: do not modify it in place)."""
        return self._x.view(self.shape)

    @property
    def round_seed(self) -> int | None:
        """Seed of the pending gradient round's directions (None in a line-search round)."""
        return None if self._in_line_search() else self._round_seed

    @property
    def round_kind(self) -> str:
        """Kind of the pending (or next) round: ``"gradient"`` or ``"line_search"``."""
        return "line_search" if self._in_line_search() else "gradient"

    @property
    def incumbent_index(self) -> int | None:
        return 0 if self._in_line_search() else None

    @property
    def candidate_roles(self) -> list[str]:
        """What each row of the pending (or next) round is, for display."""
        if not self._in_line_search():
            return [f"x + μξ_{i}" for i in range(self.m)]
        steps = [f"step η·2^-{i}" if i else "step η" for i in range(self.line_search)]
        return ["incumbent", "previous winner", *steps]

    # -- tiles --------------------------------------------------------------------------------
    def _tiles(self, rows: int) -> Iterator[tuple[int, int, int, int, int]]:
        """Tiles (index, r0, r1, c0, c1) of an ``rows × d`` matrix of directions.

        Each tile is a contiguous block of memory (whole rows, or a span of one row), so drawing
        into a slice of Ξ or into a scratch buffer yields the same numbers.
        """
        d = self.d
        if d <= _TILE:
            per = max(1, _TILE // d)
            for t, r0 in enumerate(range(0, rows, per)):
                yield t, r0, min(rows, r0 + per), 0, d
        else:
            per_row = math.ceil(d / _TILE)
            for r in range(rows):
                for j, c0 in enumerate(range(0, d, _TILE)):
                    yield r * per_row + j, r, r + 1, c0, min(d, c0 + _TILE)

    def _draw(self, out: torch.Tensor, seed: int, tile: int) -> torch.Tensor:
        """Fill the contiguous ``out`` with N(0, 1) numbers from tile ``tile`` of ``seed``."""
        self._dev_gen.manual_seed(_mix(seed, tile))
        return out.normal_(generator=self._dev_gen)

    def _scratch(self) -> torch.Tensor:
        """One buffer that every tile of a call is drawn into (the largest tile's size)."""
        # Whole-row tiles hold at most m rows; a split row holds one _TILE-long span.
        numel = self.d * min(self.m, _TILE // self.d) if self.d <= _TILE else _TILE
        return torch.empty(numel, device=self.device, dtype=self.dtype)

    @staticmethod
    def _view(buf: torch.Tensor, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """A contiguous ``(r1 − r0) × (c1 − c0)`` view at the start of the scratch buffer."""
        return buf[: (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0)

    # -- ask ----------------------------------------------------------------------------------
    def _in_line_search(self) -> bool:
        return self.line_search > 0 and self._winner is not None

    def _ask(self) -> torch.Tensor:
        X = self._ask_line_search() if self._in_line_search() else self._ask_gradient()
        return X.view(X.shape[0], *self.shape)

    def _ask_gradient(self) -> torch.Tensor:
        seed, m, x, mu = self._pending_round_seed(), self.m, self._x, self.mu
        X = torch.empty((m, self.d), device=self.device, dtype=self.dtype)
        xi = None if self.regenerate else torch.empty_like(X)
        buf = self._scratch() if xi is None else torch.empty(0)
        for t, r0, r1, c0, c1 in self._tiles(m):
            tile = self._view(buf, r0, r1, c0, c1) if xi is None else xi[r0:r1, c0:c1]
            self._draw(tile, seed, t)
            torch.add(x[c0:c1], tile, alpha=mu, out=X[r0:r1, c0:c1])  # x + μ ξ_i
        self._xi = xi
        return X

    def _winner_point(self, out: torch.Tensor) -> None:
        """Write x + μ ξ_best of the last gradient round into ``out`` (d,), redrawing ξ_best."""
        assert self._winner is not None
        seed, row = self._winner
        buf = self._scratch()
        for t, r0, r1, c0, c1 in self._tiles(self.m):
            if r0 <= row < r1:
                tile = self._draw(self._view(buf, r0, r1, c0, c1), seed, t)
                torch.add(self._x[c0:c1], tile[row - r0], alpha=self.mu, out=out[c0:c1])

    def _ask_line_search(self) -> torch.Tensor:
        assert self._acc is not None
        n = self.line_search
        X = torch.empty((n + 2, self.d), device=self.device, dtype=self.dtype)
        X[0] = self._x
        self._winner_point(X[1])
        # η·2^−i for i = 0..n−1, made on the host and copied once (no sync).
        steps = torch.tensor(
            [self.lr * 2.0**-i for i in range(n)], device=self.device, dtype=self.dtype
        )
        torch.addcmul(self._x, steps.unsqueeze(1), self._acc, value=-1.0, out=X[2:])
        return X

    # -- tell ---------------------------------------------------------------------------------
    def _tell(self, ranking: Ranking, ties: Ties) -> None:
        if self._in_line_search():
            self._tell_line_search(ranking[0])
        else:
            self._tell_gradient(ranking, ties)

    def _estimate(self, c_host: list[float], n_edges: int) -> torch.Tensor:
        """g = (1/|E|) cᵀ Ξ, accumulated tile by tile (the same way in both memory modes)."""
        assert self._round_seed is not None
        # c / |E| made on the host and copied once (no sync).
        c = torch.tensor(c_host, dtype=self.dtype).div_(n_edges).to(self.device)
        g = torch.zeros(self.d, device=self.device, dtype=self.dtype)
        buf = self._scratch() if self._xi is None else None
        for t, r0, r1, c0, c1 in self._tiles(self.m):
            if buf is None:
                assert self._xi is not None
                tile = self._xi[r0:r1, c0:c1]
            else:
                tile = self._draw(self._view(buf, r0, r1, c0, c1), self._round_seed, t)
            # g[cols] += tileᵀ c[rows], in place: no tile-sized temporary.
            g[c0:c1].addmv_(tile.t(), c[r0:r1])
        return g

    def _tell_gradient(self, ranking: Ranking, ties: Ties) -> None:
        assert self._round_seed is not None
        c_host, n_edges = graph_coefficients(self.m, ranking, ties)
        if n_edges == 0:  # everything tied: no direction, no step (see the module docstring)
            self.last_step = 0.0
            self._round_seed = None
            self._xi = None
            return
        g = self._estimate(c_host, n_edges)
        if self.line_search == 0:
            self._x.add_(g, alpha=-self.lr)  # x ← x − η g
            self.last_step = self.lr
        else:
            if self._acc is None:
                self._acc, self._n_acc = g, 1
            else:  # ĝ ← (n ĝ + g) / (n + 1): the running mean of estimates since the last move
                self._n_acc += 1
                self._acc.add_(g.sub_(self._acc), alpha=1.0 / self._n_acc)
            self._winner = (self._round_seed, ranking[0])
            self.last_step = 0.0
        self._round_seed = None
        self._xi = None

    def _tell_line_search(self, best: int) -> None:
        assert self._acc is not None and self._winner is not None
        if best == 0:  # the incumbent won: stay, keep accumulating directions
            self.last_step = 0.0
        elif best == 1:  # the previous round's winner x + μ ξ_best
            self._winner_point(self._x)
            self.last_step = self.mu
            self._acc, self._n_acc = None, 0
        else:
            step = self.lr * 2.0 ** -(best - 2)
            self._x.add_(self._acc, alpha=-step)
            self.last_step = step
            self._acc, self._n_acc = None, 0
        self._winner = None

    # -- state --------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "lr": self.lr,
            "mu": self.mu,
            "m": self.m,
            "k": self.k,
            "line_search": self.line_search,
            "regenerate": self.regenerate,
            "dtype": str(self.dtype),
        }

    def state_dict(self) -> dict[str, Any]:
        """Iterate, generator state, round bookkeeping and config (tensors on the CPU)."""
        return {
            **self._state_head(self.shape, self.m, self._config()),
            "x": self._x.detach().cpu().clone(),
            "acc": None if self._acc is None else self._acc.detach().cpu().clone(),
            "n_acc": self._n_acc,
            "winner": None if self._winner is None else list(self._winner),
            "last_step": self.last_step,
            "pending": self.pending,
        }

    @atomic_load
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output; the config must match this optimizer's."""
        self._load_state_head(state, self.shape, self.m, self._config())
        self._x.copy_(state["x"].reshape(-1))
        acc = state["acc"]
        self._acc = None if acc is None else acc.to(self.device, self.dtype).clone()
        self._n_acc = int(state["n_acc"])
        self._winner = (
            None if state["winner"] is None else (int(state["winner"][0]), int(state["winner"][1]))
        )
        self.last_step = float(state["last_step"])
        self._xi = None
        # A pending round is drawn again from its seed (or, in a line-search round, from the
        # restored iterate, ĝ and winner): the same candidates as before the save.
        self._pending = self._ask() if state["pending"] else None
