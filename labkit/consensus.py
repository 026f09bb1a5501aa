"""The consensus of a crowd: one ranking out of several raters' rankings of the same round.

In a crowd session several raters rank the same ``m`` candidates; the optimizer is told one
ranking. This module turns the raters' (partial, possibly tied) rankings into that consensus,
measures each rater's agreement with it, and turns a rater's running agreement into a weight for
the next rounds. Everything here is a pure function of its inputs (NumPy, float64, CPU): the same
rankings and weights give the same consensus, bit for bit, so a replay of the round log rebuilds
it.

Rankings and ties follow :mod:`labkit.ranking`: row indices, best first, length ``k`` between 1
and ``m``; the ``m − k`` unranked candidates are worse than every ranked one, in no known order;
a position ``p`` in ``ties`` says ``ranking[p]`` is as good as ``ranking[p − 1]``. A rater who
answers "none of these is better than the current one" gives the top-1 ranking
``(incumbent_row,)`` and is counted like any other top-1 ranking.

=========================== ========================================================================
name                        what
=========================== ========================================================================
:func:`consensus`           the consensus ranking, its ties and per-candidate scores
                            (Plackett–Luce maximum a posteriori, or Borda)
:class:`Consensus`          the frozen result record
:func:`kendall_tau`         Kendall's τ-b between two (partial, tied) rankings of the same round
:class:`RaterWeights`       per-rater weights from the running τ with the consensus
=========================== ========================================================================

Symbols (Plackett–Luce)
-----------------------
=================== ============================================================================
symbol              variable
=================== ============================================================================
θ_i                 ``theta[i]``: log-strength of candidate i (the score); γ_i = exp(θ_i)
s                   one *choice stage* (a row of ``C``): a set of candidates to choose from
C_{s,j}             ``C[s, j]``: how much of γ_j stage s's denominator counts (0, 1 or Efron's
                    1 − l/d)
w_s                 ``w[s]``: the weight of the rater the stage came from
a_i                 ``a[i]``: Σ of the weights of the stages' winners that are i (weighted wins)
x_s                 Σ_j C_{s,j} γ_j, the stage's denominator
P_{s,j}             ``P[s, j]`` = C_{s,j} γ_j / x_s, the model's probability that j wins stage s
λ                   ``_RIDGE``: precision of the Gaussian prior θ_i ~ N(0, 1/λ)
=================== ============================================================================
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from labkit._checks import check_nonneg, integer
from labkit.ranking import Ranking, Ties, tie_groups, validate_ranking, validate_ties

__all__ = [
    "Consensus",
    "ConsensusMethod",
    "RaterWeights",
    "consensus",
    "kendall_tau",
]

ConsensusMethod = Literal["plackett-luce", "borda"]
_METHODS: tuple[str, ...] = ("plackett-luce", "borda")

#: λ, the precision of the Gaussian prior θ_i ~ N(0, 1/λ) on each log-strength (a ridge penalty
#: λ/2 ‖θ‖² on the negative log-likelihood). Why a prior at all: the Plackett–Luce maximum
#: likelihood exists only when every candidate both wins and loses somewhere in a chain of
#: comparisons (Hunter 2004, assumption 1; Ford 1957); with a handful of raters that fails all the
#: time (unanimous raters: the top candidate's MLE is +∞, a never-ranked one's is −∞). The ridge
#: makes the objective strictly convex, so the estimate exists, is unique and finite for every
#: input, and it centres the scores (Σ_i θ_i = 0 at the optimum, see ``_plackett_luce``), which
#: pins the one direction the likelihood cannot see (adding a constant to every θ). Why 0.1: a
#: prior standard deviation of √10 ≈ 3.2 in log-strength (a strength ratio of ~24 per standard
#: deviation) is wide next to what rankings express, so with tens of raters the shrinkage is a
#: few percent at most, while a candidate nobody ranks first still gets a finite, ordered score.
_RIDGE = 0.1

#: Newton's method stops when half the squared Newton decrement (the predicted decrease of the
#: objective) falls below this, or after ``_MAX_NEWTON`` steps. Newton converges quadratically on
#: this smooth, strongly convex objective: 5 to 10 steps in practice.
_NEWTON_TOL = 1e-20
_MAX_NEWTON = 50

#: Two scores count as equal (a tie in the consensus) when they differ by at most this, relative
#: to max(1, |score|). Exact float equality would be the wrong test: the same symmetric problem
#: (two raters with opposite rankings) gives scores that agree only to ~1e-15, depending on the
#: order of the floating-point sums. 1e-9 is far above the solver's precision and far below any
#: difference a ranking of a few candidates by a few raters expresses.
_TIE_RTOL = 1e-9


@dataclass(frozen=True)
class Consensus:
    """The consensus of one round.

    ``ranking``: row indices, best first; all ``m`` of them, or the top ``k`` when ``k`` was given.
    ``ties``: positions p (1 <= p <= len(ranking) − 1) where ``ranking[p]`` scored the same as
    ``ranking[p − 1]`` (see ``_TIE_RTOL``), in the convention of :mod:`labkit.ranking`.
    ``scores``: one float per candidate (length ``m``, by row index), higher is better: the
    log-strength θ_i for Plackett–Luce (centred, Σ θ_i = 0), the weighted Borda count for Borda.
    ``method``: the method that produced it.
    """

    ranking: Ranking
    ties: Ties
    scores: tuple[float, ...]
    method: str


# -- checks ---------------------------------------------------------------------------------------
def _check_m(m: Any) -> int:
    mi = integer(m)
    if mi is None or mi < 1:
        raise ValueError(f"a round must have at least one candidate; got m={m!r}")
    return mi


def _as_list(value: Any, name: str) -> list[Any]:
    """A list of the per-rater entries of ``value`` (a list, tuple, array or 1-D tensor)."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 1:
            raise ValueError(f"{name} must be one-dimensional; got shape {tuple(value.shape)}")
        return list(value.tolist())
    if isinstance(value, (str, bytes, dict, set, frozenset)) or not isinstance(
        value, (Sequence, np.ndarray)
    ):
        raise ValueError(f"{name} must be a list with one entry per rater; got {value!r}")
    return list(value)


def _check_crowd(
    rankings: Any, m: int, ties: Any, weights: Any
) -> tuple[list[Ranking], list[Ties], list[float]]:
    """Validated rankings, ties and weights of a crowd, with a message naming the bad rater."""
    rs = _as_list(rankings, "rankings")
    if len(rs) == 0:
        raise ValueError("a consensus needs at least one rater's ranking; got an empty list")
    n = len(rs)
    out_r: list[Ranking] = []
    for j, r in enumerate(rs):
        try:
            out_r.append(validate_ranking(r, m))
        except ValueError as e:
            raise ValueError(f"rater {j}'s ranking: {e}") from e
    if ties is None:
        out_t: list[Ties] = [()] * n
    else:
        ts = _as_list(ties, "ties")
        if len(ts) != n:
            raise ValueError(
                f"ties must have one entry (None or tie positions) per rater: {n} rankings but "
                f"{len(ts)} ties"
            )
        out_t = []
        for j, (r, t) in enumerate(zip(out_r, ts, strict=True)):
            try:
                out_t.append(validate_ties(t, len(r)))
            except ValueError as e:
                raise ValueError(f"rater {j}'s ties: {e}") from e
    if weights is None:
        out_w = [1.0] * n
    else:
        ws = _as_list(weights, "weights")
        if len(ws) != n:
            raise ValueError(
                f"weights must have one entry per rater: {n} rankings but {len(ws)} weights"
            )
        out_w = [check_nonneg(f"weights[{j}]", w) for j, w in enumerate(ws)]
        if not any(w > 0 for w in out_w):
            raise ValueError(
                f"at least one rater must have a positive weight; got all zero: {out_w!r}"
            )
    return out_r, out_t, out_w


# -- the consensus --------------------------------------------------------------------------------
def consensus(
    rankings: Sequence[Any],
    *,
    m: int,
    ties: Sequence[Any] | None = None,
    weights: Sequence[float] | None = None,
    method: ConsensusMethod = "plackett-luce",
    k: int | None = None,
) -> Consensus:
    """The consensus of several raters' rankings of the same round of ``m`` candidates.

    ``rankings``: one ranking per rater (see :mod:`labkit.ranking`); raters may rank different
    numbers of candidates. ``ties``: ``None`` (no ties anywhere) or one entry per rater, each
    ``None`` or that rater's tie positions. ``weights``: ``None`` (all 1) or one finite weight
    ``>= 0`` per rater, read as a count: a rater of weight 2 counts as two identical raters, a
    rater of weight 0 is left out exactly (the result is bit for bit the one without it).
    ``k``: ``None`` for a full consensus ranking of all ``m`` candidates, or the length of the
    top-k consensus to return.

    ``method="plackett-luce"`` (the default) fits the Plackett–Luce model by maximum a posteriori
    (see :func:`_plackett_luce`): each ranking is a sequence of choices, the first-ranked
    candidate chosen among all ``m``, the next among the rest, and so on for the ranked ones
    only; the unranked candidates stay in every choice set. A tied group is one choice of a set,
    with Efron's approximation. The score is the fitted log-strength θ_i.

    ``method="borda"``: a candidate earns, in each ranking, one point per candidate it beats and
    half a point per candidate tied with it; the unranked candidates share the last ``m − k``
    places (they tie with each other). Equivalently m − 1 minus its average 0-based position.
    The score is the weighted sum over raters.

    The consensus order is by score, higher first, then by lower row index: deterministic, and
    a candidate whose score equals (to ``_TIE_RTOL``) the one before it is *tied* with it in
    ``Consensus.ties`` (a run of equal scores is one tied group, listed in row-index order).

    Raises ``ValueError`` naming what was wrong: an empty list of rankings, a malformed ranking
    or ties (naming the rater), weights of the wrong length, negative or not finite, all weights
    zero, an unknown method, or ``k`` outside ``1..m``.
    """
    m = _check_m(m)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}; got {method!r}")
    if k is not None:
        ki = integer(k)
        if ki is None or not 1 <= ki <= m:
            raise ValueError(f"k must be None (a full ranking) or an integer in 1..{m}; got {k!r}")
        k = ki
    rs, ts, ws = _check_crowd(rankings, m, ties, weights)
    # A weight of 0 removes the rater before any arithmetic, so the result is exactly the one
    # without it (adding 0.0-weighted rows would change the order of float sums, not the maths).
    crowd = [(r, t, w) for r, t, w in zip(rs, ts, ws, strict=True) if w > 0]
    if method == "borda":
        scores = _borda(crowd, m)
    else:
        scores = _plackett_luce(crowd, m)
    ranking, cties = _order(scores)
    if k is not None:
        ranking = ranking[:k]
        cties = tuple(p for p in cties if p < k)
    return Consensus(
        ranking=ranking,
        ties=cties,
        scores=tuple(float(s) for s in scores),
        method=method,
    )


def _order(scores: np.ndarray) -> tuple[Ranking, Ties]:
    """The full ranking by score (higher first, then lower index) and its ties.

    1. Sort by (−score, index). 2. Cut the sorted list into runs of neighbours whose scores are
    equal to ``_TIE_RTOL``. 3. List each run's candidates by index (their scores differ by
    rounding only, which must not decide the order) and tie every one to the one before it.
    """
    m = len(scores)
    order = sorted(range(m), key=lambda i: (-float(scores[i]), i))
    runs = [[order[0]]]
    for prev, cur in itertools.pairwise(order):
        sa, sb = float(scores[prev]), float(scores[cur])
        if abs(sa - sb) <= _TIE_RTOL * max(1.0, abs(sa), abs(sb)):
            runs[-1].append(cur)
        else:
            runs.append([cur])
    ranking: list[int] = []
    ties: list[int] = []
    for run in runs:
        ties.extend(range(len(ranking) + 1, len(ranking) + len(run)))
        ranking.extend(sorted(run))
    return tuple(ranking), tuple(ties)


def _borda(crowd: list[tuple[Ranking, Ties, float]], m: int) -> np.ndarray:
    """Weighted Borda counts, shape ``(m,)``.

    A ranked group occupying positions [s, e) of a ranking of length k beats the k − e ranked
    below it and the m − k unranked ones, and ties with the e − s − 1 others of its group; the
    m − k unranked beat nobody and tie with each other. Points = beaten + ½ · tied-with.
    """
    score = np.zeros(m, dtype=np.float64)
    for r, t, w in crowd:
        kk = len(r)
        pts = np.full(m, 0.5 * (m - kk - 1), dtype=np.float64)  # unranked: tie with m − k − 1
        for s, e in tie_groups(kk, t):
            pts[list(r[s:e])] = (m - e) + 0.5 * (e - s - 1)
        score += w * pts
    return score


def _choice_stages(
    crowd: list[tuple[Ranking, Ties, float]], m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The choice stages of the crowd's rankings: ``C`` (S × m), ``w`` (S,), ``a`` (m,).

    A rater's tied groups G_1, G_2, ... (best first) are chosen in turn; G_g is chosen from
    R_g = every candidate not in G_1..G_{g−1} (the unranked stay in every R_g). With Efron's
    approximation a group of d tied candidates contributes

        Σ_{i∈G} θ_i − Σ_{l=0}^{d−1} log( Σ_{j∈R} γ_j − (l/d) Σ_{j∈G} γ_j ),

    i.e. d stages with coefficients C_{s,j} = 1 on R \\ G and 1 − l/d on G; for d = 1 this is the
    plain Plackett–Luce choice θ_i − log Σ_{j∈R} γ_j. A stage whose choice set is one candidate
    says nothing (θ_i − log γ_i = 0) and is skipped.
    """
    # Plain Python lists while building (m is small; per-element NumPy calls would dominate).
    rows: list[list[float]] = []
    ws: list[float] = []
    wins = [0.0] * m
    for r, t, w in crowd:
        alive = [1.0] * m  # indicator of R_g
        n_alive = m
        for s, e in tie_groups(len(r), t):
            group = r[s:e]
            d = e - s
            if n_alive > 1:
                for i in group:
                    wins[i] += w
                for l in range(d):  # noqa: E741 (l is Efron's index)
                    c = alive.copy()
                    for i in group:
                        c[i] = 1.0 - l / d
                    rows.append(c)
                    ws.append(w)
            for i in group:
                alive[i] = 0.0
            n_alive -= d
    C = np.array(rows, dtype=np.float64).reshape(len(rows), m)
    a = np.array(wins, dtype=np.float64)
    return C, np.asarray(ws, dtype=np.float64), a


def _plackett_luce(crowd: list[tuple[Ranking, Ties, float]], m: int) -> np.ndarray:
    """Plackett–Luce log-strengths θ (shape ``(m,)``), maximum a posteriori under θ_i ~ N(0, 1/λ).

    Minimizes the negative log-posterior (stages from :func:`_choice_stages`)

        f(θ) = −Σ_i a_i θ_i + Σ_s w_s log x_s(θ) + (λ/2) ‖θ‖²,   x_s = Σ_j C_{s,j} e^{θ_j},

    by Newton's method with backtracking (Armijo) line search, from θ = 0. With
    P_{s,j} = C_{s,j} e^{θ_j} / x_s:

        ∇f = −a + Pᵀw + λθ,      ∇²f = diag(Pᵀw) − Pᵀ diag(w) P + λI.

    Each log x_s is convex in θ (a log-sum-exp), so f is λ-strongly convex: one minimizer, and
    Newton with a line search reaches it from anywhere. Why Newton and not Hunter's (2004) MM:
    m is tiny (an m × m solve is nothing), and MM crawls when the data nearly separate the
    candidates (unanimous raters), where Newton still needs only a handful of steps.

    Centring: each stage's P row sums to 1 and each group of d winners adds d to Σ a and d
    stages, so Σ_i ∂f/∂θ_i = λ Σ_i θ_i; at the optimum Σ_i θ_i = 0.
    """
    C, w, a = _choice_stages(crowd, m)
    logC = np.log(C, out=np.full_like(C, -np.inf), where=C > 0)

    def parts(theta: np.ndarray) -> tuple[float, np.ndarray]:
        # log x_s by a shifted log-sum-exp (θ is finite, but can be large with large weights).
        z = logC + theta[None, :]
        zmax = z.max(axis=1, keepdims=True) if len(z) else np.zeros((0, 1))
        ez = np.exp(z - zmax)
        sx = ez.sum(axis=1, keepdims=True)
        logx = (np.log(sx) + zmax)[:, 0]
        f = float(-a @ theta + w @ logx + 0.5 * _RIDGE * (theta @ theta))
        return f, ez / sx  # f(θ), P

    theta = np.zeros(m, dtype=np.float64)
    f, P = parts(theta)
    for _ in range(_MAX_NEWTON):
        pw = P.T @ w  # Σ_s w_s P_{s,j}: the expected weighted wins of j
        g = -a + pw + _RIDGE * theta
        H = np.diag(pw) - (P.T * w) @ P + _RIDGE * np.eye(m)
        step = -np.linalg.solve(H, g)
        decrement = float(-(g @ step))  # λ(θ)² = gᵀ H⁻¹ g >= 0
        if decrement / 2 <= _NEWTON_TOL:
            break
        # Backtracking: halve the step until f drops by at least ¼ of the linear prediction.
        t = 1.0
        while True:
            trial = theta + t * step
            f_trial, P_trial = parts(trial)
            if f_trial <= f - 0.25 * t * decrement:
                break
            t *= 0.5
            if t < 1e-10:  # no decrease left to find: θ is optimal to float precision
                return theta
        theta, f, P = trial, f_trial, P_trial
    return theta


# -- agreement ------------------------------------------------------------------------------------
def _levels(r: Ranking, t: Ties, m: int) -> np.ndarray:
    """Each candidate's group number in a ranking (0 = best); every unranked one gets the last."""
    groups = tie_groups(len(r), t)
    lv = np.full(m, len(groups), dtype=np.int64)
    for g, (s, e) in enumerate(groups):
        lv[list(r[s:e])] = g
    return lv


def kendall_tau(
    ranking_a: Any,
    ranking_b: Any,
    *,
    m: int,
    ties_a: Any = None,
    ties_b: Any = None,
) -> float:
    """Kendall's τ-b between two (partial, tied) rankings of the same ``m`` candidates.

    Each ranking orders the candidates into levels: its tied groups, best first, then all the
    unranked ones tied at the bottom. Over the m(m−1)/2 pairs {i, j}, with sign_a(i, j) in
    {−1, 0, +1} the sign of the order ``ranking_a`` gives them (0: tied),

        τ_b = Σ_{i<j} sign_a(i, j) · sign_b(i, j) / √(n_a · n_b),

    where n_a (n_b) is the number of pairs ``ranking_a`` (``ranking_b``) does not tie. It is 1
    for the same order, −1 for the reverse, and symmetric in a and b. When n_a or n_b is 0 (a
    ranking that orders nothing: m = 1, or a full ranking with every candidate tied) τ_b is 0/0;
    this returns 0.0 then, read as "no evidence of agreement or disagreement", so a rater's
    running agreement is never NaN.

    Rankings and ties are validated as in :mod:`labkit.ranking` (``ValueError``).
    """
    m = _check_m(m)
    ra, rb = validate_ranking(ranking_a, m), validate_ranking(ranking_b, m)
    ta, tb = validate_ties(ties_a, len(ra)), validate_ties(ties_b, len(rb))
    la, lb = _levels(ra, ta, m), _levels(rb, tb, m)
    iu, ju = np.triu_indices(m, k=1)
    # sign of "i before j": level of j minus level of i (a lower level is better).
    sa = np.sign(la[ju] - la[iu])
    sb = np.sign(lb[ju] - lb[iu])
    n_a = int(np.count_nonzero(sa))
    n_b = int(np.count_nonzero(sb))
    if n_a == 0 or n_b == 0:
        return 0.0
    return float(int(sa @ sb) / math.sqrt(n_a * n_b))


class RaterWeights:
    """Per-rater weights from each rater's running agreement with the consensus.

    After each round, ``update(rater, τ)`` records the rater's Kendall τ-b with that round's
    consensus (:func:`kendall_tau`). A rater's weight is their recent mean τ, shrunk toward full
    agreement while they have few rounds, and floored at 0:

        w = max(0, (n₀ · 1 + Σ_{t=1}^{n} τ_t) / (n₀ + n)),

    over the rater's last n <= N rounds (``window=N``), with ``prior_rounds=n₀`` pseudo-rounds
    at τ = 1. So:

    * a new rater (n = 0) starts at weight 1, and one odd round moves it by at most
      2/(n₀ + 1), not to 0: a newcomer is trusted until the evidence says otherwise;
    * a rater who agrees with the crowd (τ near 1) stays near 1; a random rater (τ ≈ 0 on
      average) drifts to n₀/(n₀ + N), small once N >> n₀; a contrary rater (mean τ <= −n₀/N)
      reaches 0 and is left out of the consensus exactly;
    * only the last N rounds count, so a rater who improves earns the weight back (keep
      updating raters of weight 0: their τ is then measured against a consensus they did not
      shape).

    The prior is at τ = 1 rather than at the crowd's mean so that a rater's weight depends on
    their own history only: the crowd cannot push a newcomer down, and the rule stays simple to
    replay. w is in [0, 1] since τ <= 1.

    Intended use, each round: ``w = rw.weights(raters)``; ``c = consensus(rankings, m=m,
    weights=w)``; then ``rw.update(r, kendall_tau(ranking_r, c.ranking, m=m, ...))`` for each
    rater. The weights are a pure function of the recorded τ values (summed in the order they
    were recorded), so replaying the round log, or ``load_state_dict(state_dict())``, rebuilds
    the same weights bit for bit.
    """

    def __init__(self, *, window: int = 20, prior_rounds: float = 3.0) -> None:
        wi = integer(window)
        if wi is None or wi < 1:
            raise ValueError(f"window must be a positive integer number of rounds; got {window!r}")
        self.window: int = wi
        self.prior_rounds: float = check_nonneg("prior_rounds", prior_rounds)
        self._taus: dict[str, deque[float]] = {}

    def update(self, rater: str, tau: float) -> None:
        """Record ``rater``'s τ with this round's consensus (a finite number in [−1, 1])."""
        if not isinstance(rater, str):
            raise ValueError(f"rater must be a string id; got {rater!r}")
        if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
            raise ValueError(f"tau must be a number in [-1, 1]; got {tau!r}")
        v = float(tau)
        if not (math.isfinite(v) and -1.0 <= v <= 1.0):
            raise ValueError(f"tau must be a finite number in [-1, 1]; got {tau!r}")
        self._taus.setdefault(rater, deque(maxlen=self.window)).append(v)

    def weight(self, rater: str) -> float:
        """The rater's weight in [0, 1]; 1 for a rater never seen."""
        taus = self._taus.get(rater, ())
        total = self.prior_rounds  # n₀ pseudo-rounds at τ = 1
        for t in taus:  # in recorded order: a fixed order of float sums
            total += t
        n = self.prior_rounds + len(taus)
        if n == 0:  # n₀ = 0 and no rounds yet: no evidence, full weight
            return 1.0
        return max(0.0, total / n)

    def weights(self, raters: Sequence[str]) -> list[float]:
        """``[weight(r) for r in raters]``, ready for :func:`consensus`'s ``weights``."""
        return [self.weight(r) for r in raters]

    def rounds(self, rater: str) -> int:
        """How many rounds of ``rater`` are in the window (at most ``window``)."""
        return len(self._taus.get(rater, ()))

    def state_dict(self) -> dict[str, Any]:
        """The config and every rater's recent τ values (plain Python, JSON-friendly)."""
        return {
            "window": self.window,
            "prior_rounds": self.prior_rounds,
            "taus": {r: list(q) for r, q in self._taus.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output; its config must match this instance's."""
        if not isinstance(state, dict) or set(state) != {"window", "prior_rounds", "taus"}:
            raise ValueError(
                "a RaterWeights state must be a dict with keys 'window', 'prior_rounds', 'taus'; "
                f"got {state!r}"
            )
        if state["window"] != self.window or state["prior_rounds"] != self.prior_rounds:
            raise ValueError(
                f"the state was saved with window={state['window']!r}, "
                f"prior_rounds={state['prior_rounds']!r}; this RaterWeights has "
                f"window={self.window}, prior_rounds={self.prior_rounds}"
            )
        fresh = RaterWeights(window=self.window, prior_rounds=self.prior_rounds)
        taus = state["taus"]
        if not isinstance(taus, dict):
            raise ValueError(f"state['taus'] must map rater ids to lists of τ; got {taus!r}")
        for rater, values in taus.items():
            if len(values) > self.window:
                raise ValueError(
                    f"rater {rater!r} has {len(values)} τ values, more than window={self.window}"
                )
            for v in values:
                fresh.update(rater, v)  # validated like live updates
        self._taus = fresh._taus
