"""ZO-RankSGD written the straightforward way in NumPy: the yardstick of ``labkit bench speed``.

This is the code one writes first, reading Algorithm 1 of the paper, and it is kept that way on
purpose (do not optimise it): it

* draws the ``m`` directions ξ_i ~ N(0, I_d) one candidate at a time and **stores** them, together
  with all ``m`` perturbed points x + μ ξ_i (``2·m·d`` floats held between ``ask`` and ``tell``);
* builds the ranking graph edge by edge — "i beats j" for every ranked pair and for every ranked
  candidate against every unranked one — and counts, for each candidate, how often it enters the
  estimate with + and with − sign;
* accumulates g = (1/|E|) Σ_{(i, j) ∈ E} (ξ_j − ξ_i) with a Python loop over the candidates.

It computes the same estimate as :class:`labkit.optim.ZORankSGD` (whose closed form
c_i = 2p + 1 − m for the candidate ranked at position p, c_i = k for an unranked one, is derived in
that module) but derives the coefficients independently, from the edges; the tests use it as a
correctness cross-check by handing both the same directions. Everything is float32, like the
torch optimizer's CPU default, so the speed comparison is like for like.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labkit.ranking import validate_ranking

__all__ = ["NumpyRankSGD", "ranking_edges"]


def ranking_edges(ranking: Sequence[int], m: int) -> list[tuple[int, int]]:
    """The edges (winner, loser) of the ranking graph of a top-k ranking of ``m`` candidates.

    Every ranked candidate beats the ones ranked below it and every one of the ``m − k`` unranked
    candidates; the unranked ones are not compared with each other. ``len(result) == |E|`` =
    k(k−1)/2 + k(m−k).
    """
    r = validate_ranking(ranking, m)
    unranked = [i for i in range(m) if i not in r]
    edges = [(r[p], r[q]) for p in range(len(r)) for q in range(p + 1, len(r))]
    edges += [(i, j) for i in r for j in unranked]
    return edges


class NumpyRankSGD:
    """Plain-NumPy ZO-RankSGD (Algorithm 1, no line search): ``ask`` / ``tell`` on arrays.

    Args:
        x0: starting point, any array-like; flattened to a ``(d,)`` float32 copy.
        lr: step size η; mu: smoothing radius μ; m: candidates per round.
        seed: seed of the ``numpy.random.Generator`` (PCG64) the directions come from.

    ``ask()`` returns the ``m × d`` float32 array of candidates x + μ ξ_i (stored, not copied);
    ``tell(ranking)`` takes row indices best first (as :mod:`labkit.ranking` defines them) and moves
    x ← x − η g.
    """

    def __init__(self, x0: object, *, lr: float, mu: float, m: int = 8, seed: int = 0) -> None:
        if m < 2:
            raise ValueError(f"m (candidates per round) must be >= 2; got m={m!r}")
        self.x = np.array(x0, dtype=np.float32).reshape(-1)  # a copy: the caller's x0 is left alone
        self.d = self.x.size
        self.lr = float(lr)
        self.mu = float(mu)
        self.m = int(m)
        self.rng = np.random.default_rng(seed)
        self.X: np.ndarray | None = None  # (m, d) candidates of the pending round
        self.xi: np.ndarray | None = None  # (m, d) their directions

    def ask(self, directions: np.ndarray | None = None) -> np.ndarray:
        """Draw (or take) the ``m × d`` directions and return the candidates x + μ ξ_i.

        ``directions``, when given, is used instead of drawing: an ``(m, d)`` array (this is how
        the tests feed both implementations the same ξ).
        """
        m, d = self.m, self.d
        if directions is not None and np.shape(directions) != (m, d):
            raise ValueError(
                f"directions must have shape (m, d) = ({m}, {d}); got {np.shape(directions)}"
            )
        self.X = np.empty((m, d), dtype=np.float32)
        self.xi = np.empty((m, d), dtype=np.float32)
        for i in range(m):  # one candidate at a time, as the algorithm reads
            if directions is None:
                self.xi[i] = self.rng.standard_normal(d, dtype=np.float32)
            else:
                self.xi[i] = directions[i]
            self.X[i] = self.x + self.mu * self.xi[i]
        return self.X

    def estimate(self, ranking: Sequence[int]) -> np.ndarray:
        """g = (1/|E|) Σ over the edges (i beats j) of (ξ_j − ξ_i), for the pending round: (d,)."""
        if self.xi is None:
            raise ValueError("estimate() needs a pending round: call ask() first")
        edges = ranking_edges(ranking, self.m)
        # Each edge adds +ξ_loser and −ξ_winner; count those signs per candidate first, so the
        # vector work is one pass per candidate instead of two per edge.
        count = [0] * self.m
        for winner, loser in edges:
            count[loser] += 1
            count[winner] -= 1
        g = np.zeros(self.d, dtype=np.float32)
        for i in range(self.m):
            g += np.float32(count[i] / len(edges)) * self.xi[i]
        return g

    def tell(self, ranking: Sequence[int]) -> None:
        """Move x ← x − η g for the ranking of the pending round, and end the round."""
        g = self.estimate(ranking)
        self.x -= np.float32(self.lr) * g
        self.X = None
        self.xi = None
