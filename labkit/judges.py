"""Machine judges: rankings of a round's candidates from values, with or without human-like noise.

A *judge* is a callable ``judge(X) -> Ranking``: it takes the ``m × ...`` candidates of one round
and returns a ranking as defined in :mod:`labkit.ranking` (row indices of ``X``, best first,
length ``k`` between 1 and ``m``). Every judge here passes its answer through
:func:`~labkit.ranking.validate_ranking` before returning it, so it can be handed straight to
``opt.tell``.

=================== ==========================================================================
judge               ranking
=================== ==========================================================================
``TopKJudge``       the exact top ``k`` of a batched value function (ties: lower index first)
``NoisyJudge``      a sample from Plackett–Luce (temperature ``T``) or Thurstone (noise ``σ``)
                    around the values, optionally with one adjacent pair swapped
``ScoreJudge``      the top ``k`` of any score model applied to the rendered candidates
                    (e.g. a classifier's probability), optionally with Thurstone noise
=================== ==========================================================================

Conventions shared by all judges:

* ``maximize=False`` means lower values are better (test functions); ``True`` means higher is
  better (scores, probabilities).
* Ties are broken by the lower row index (a stable sort), so a noiseless judge is a pure function
  of the values.
* Randomness comes only from the judge's own CPU ``torch.Generator`` (``seed=`` an int, or a
  generator). The noise is drawn on the CPU in float64 whatever the candidates' device, so a
  judge's rankings are the same for the same seed and values on any device.
* Values must not be NaN: a NaN has no place in an order, and is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from labkit._checks import check_flag, check_nonneg, integer
from labkit.optim.base import make_generator
from labkit.ranking import Ranking, validate_ranking

__all__ = [
    "Judge",
    "NoisyJudge",
    "ScoreJudge",
    "TopKJudge",
    "ranking_from_values",
]

#: Anything that maps a round's ``m × ...`` candidates to a ranking, best first.
Judge = Callable[[torch.Tensor], Ranking]

NoiseModel = Literal["plackett-luce", "thurstone"]
_MODELS: tuple[str, ...] = ("plackett-luce", "thurstone")


# -- checks ---------------------------------------------------------------------------------------
def _check_k(k: Any) -> int | None:
    """``None`` (a full ranking) or a positive int; checked when the judge is built."""
    if k is None:
        return None
    if integer(k) is None or k < 1:
        raise ValueError(f"k must be None (a full ranking) or an int >= 1; got k={k!r}")
    return int(k)


def _resolve_k(k: int | None, m: int) -> int:
    """The number of candidates to rank in a round of ``m``; ``k > m`` is an error, not clipped."""
    if k is None:
        return m
    if k > m:
        raise ValueError(f"cannot rank the top k={k} of a round of only m={m} candidates")
    return k


def _make_generator(seed: int | torch.Generator) -> torch.Generator:
    """The judge's own CPU generator: a fresh one seeded with ``seed``, or the one handed in.

    Made by :func:`~labkit.optim.base.make_generator`, as an optimizer's is; only ``None`` (an OS
    seed there) is refused: a judge is always seeded, so its answers can be drawn again.
    """
    if isinstance(seed, torch.Generator):
        return make_generator(None, seed)
    if seed is None:
        raise ValueError("seed must be a non-negative int or a torch.Generator; got None")
    return make_generator(seed, None)


def _num_candidates(X: Any) -> int:
    """``m``, the number of rows of a round's candidates."""
    if isinstance(X, torch.Tensor):
        if X.dim() == 0:
            raise ValueError("candidates must have a leading round dimension m; got a 0-d tensor")
        m = int(X.shape[0])
    else:
        try:
            m = len(X)
        except TypeError:
            raise ValueError(
                f"candidates must be an m × ... tensor or a sequence; got {type(X).__name__}"
            ) from None
    if m < 1:
        raise ValueError("a round must have at least one candidate; got m=0")
    return m


def _as_values(values: Any, m: int | None = None, *, source: str = "values") -> torch.Tensor:
    """``values`` as a 1-D CPU tensor (its dtype kept), refusing bad shapes, bools and NaNs.

    ``m``, when given, is the required length (one value per candidate). The one host transfer of
    a judge happens here: a ranking is a tuple of Python ints, so the values must come home.
    """
    if isinstance(values, torch.Tensor):
        v = values.detach().cpu()
    else:
        try:
            v = torch.as_tensor(np.asarray(values))
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{source} must be an (m,) array of numbers; got {values!r}") from err
    if v.dim() != 1:
        raise ValueError(
            f"{source} must be one-dimensional, one value per candidate; got shape {tuple(v.shape)}"
        )
    if v.dtype == torch.bool or v.dtype.is_complex:
        raise ValueError(f"{source} must be real numbers; got dtype {v.dtype}")
    if m is not None and v.shape[0] != m:
        raise ValueError(f"{source} must have one value per candidate (m={m}); got {v.shape[0]}")
    if v.shape[0] == 0:
        raise ValueError(f"{source} must not be empty: a round has at least one candidate")
    if v.dtype.is_floating_point:
        nan = torch.isnan(v)
        if bool(nan.any()):
            i = int(nan.nonzero()[0, 0])
            raise ValueError(f"{source}[{i}] is NaN; a NaN cannot be ranked")
    return v


# -- ranking from values, written once ------------------------------------------------------------
def _full_order(values: torch.Tensor, maximize: bool) -> torch.Tensor:
    """All ``m`` row indices, best first: an ``(m,)`` int64 tensor on values' device.

    A stable sort keeps equal values in index order, in both directions, so ties go to the lower
    index. ``-inf``/``+inf`` sort to the ends as they should.
    """
    return torch.sort(values, descending=maximize, stable=True).indices


def _rank_from_values(values: torch.Tensor, k: int | None, maximize: bool) -> Ranking:
    """The top ``k`` (``None``: all) of a checked 1-D ``values`` tensor, best first."""
    m = values.shape[0]
    kk = _resolve_k(k, m)
    return tuple(_full_order(values, maximize)[:kk].tolist())


def ranking_from_values(values: Any, *, k: int | None = None, maximize: bool = False) -> Ranking:
    """The exact ranking of ``m`` candidates by their values, best first.

    Args:
        values: ``(m,)`` tensor (any device), array or list of real numbers, no NaN.
        k: how many to rank (``1 <= k <= m``); ``None`` ranks all ``m``.
        maximize: ``False``: lowest value first; ``True``: highest first.

    Ties go to the lower index. Returns a validated :data:`~labkit.ranking.Ranking`.
    """
    v = _as_values(values)
    return validate_ranking(
        _rank_from_values(v, _check_k(k), check_flag("maximize", maximize)), v.shape[0]
    )


def _noisy_ranking(
    values: torch.Tensor,
    k: int | None,
    *,
    maximize: bool,
    model: str,
    scale: float,
    swap_prob: float,
    generator: torch.Generator,
) -> Ranking:
    """A noisy judge's top ``k`` (``None``: all) of a checked 1-D CPU ``values`` tensor.

    Draws exactly ``m + 2`` numbers from ``generator`` per call, whatever the parameters: the
    same seed then gives the same underlying noise for any ``scale`` or ``swap_prob``, which
    makes runs that differ only in those comparable.

    Plackett–Luce, for minimization: candidate ``i`` is chosen first with probability
    ∝ exp(−v_i / T), then the next from the rest in the same way. By the Gumbel-max trick this is
    the same as sorting ``−v_i/T + G_i`` in decreasing order with ``G_i`` i.i.d. standard
    Gumbel; multiplying by ``−T < 0`` turns it into sorting ``v_i − T·G_i`` in increasing order,
    which stays finite as ``T → 0`` (no ``v/T`` overflow) and is exactly the noiseless order at
    ``T = 0``. For maximization the sign flips: sort ``v_i + T·G_i`` decreasing.

    Thurstone: sort ``v_i + σ·Z_i`` with ``Z_i`` i.i.d. standard normal (symmetric, so the sign
    does not depend on the direction).
    """
    m = values.shape[0]
    kk = _resolve_k(k, m)
    v = values.to(torch.float64)
    # 1. Perturb the values.
    if model == "plackett-luce":
        u = torch.rand(m, generator=generator, dtype=torch.float64)
        # G = −log(E), E = −log(1 − u) ~ Exp(1). u ∈ [0, 1) makes E = 0 possible (u = 0, odds
        # 2⁻⁵³); flooring E at the smallest normal double keeps G finite so 0·G = 0 at T = 0.
        e = (-torch.log1p(-u)).clamp_min(torch.finfo(torch.float64).tiny)
        gumbel = -torch.log(e)
        noisy = v + scale * gumbel if maximize else v - scale * gumbel
    else:
        noisy = v + scale * torch.randn(m, generator=generator, dtype=torch.float64)
    # 2. Sort them (ties, e.g. at zero noise, to the lower index).
    order = _full_order(noisy, maximize)
    # 3. One adjacent swap with probability swap_prob: a slip of the hand while dragging. The pair
    # is drawn among positions (i, i+1) for i < min(k, m−1), i.e. within the ranked part or
    # across its end, so every swap changes the returned ranking (a top-1 judge can still slip).
    coin, where = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    pairs = min(kk, m - 1)
    if coin < swap_prob and pairs > 0:
        i = min(int(where * pairs), pairs - 1)
        order[[i, i + 1]] = order[[i + 1, i]]
    return tuple(order[:kk].tolist())


# -- the judges -----------------------------------------------------------------------------------
class TopKJudge:
    """The exact top ``k`` of ``m`` candidates under a batched value function.

    Args:
        fn: maps the ``m × ...`` candidates to ``(m,)`` values (tensor on any device, array or
            list), e.g. ``labkit.tasks.functions.sphere`` or ``task.score``.
        k: how many to rank; ``None`` ranks all ``m``. ``k > m`` in a round is a ``ValueError``.
        maximize: ``False`` (default): lower values are better.

    Ties are broken by the lower row index (stable sort), so the judge is deterministic.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], Any],
        *,
        k: int | None = None,
        maximize: bool = False,
    ) -> None:
        if not callable(fn):
            raise ValueError(f"fn must be a callable from candidates to values; got {fn!r}")
        self.fn = fn
        self.k = _check_k(k)
        self.maximize = check_flag("maximize", maximize)

    def __repr__(self) -> str:
        return f"TopKJudge({self.fn!r}, k={self.k}, maximize={self.maximize})"

    def __call__(self, X: torch.Tensor) -> Ranking:
        """The ranking of the ``m × ...`` candidates ``X``, best first (length ``k`` or ``m``)."""
        m = _num_candidates(X)
        values = _as_values(self.fn(X), m, source="fn(X)")
        return validate_ranking(_rank_from_values(values, self.k, self.maximize), m)


class NoisyJudge:
    """A human-like judge: a random ranking that usually, not always, follows the values.

    Args:
        fn: maps the ``m × ...`` candidates to ``(m,)`` values (tensor, array or list).
        k: how many to rank; ``None`` ranks all ``m``.
        maximize: ``False`` (default): lower values are better.
        model: ``"plackett-luce"`` (default) or ``"thurstone"``.
        temperature: Plackett–Luce's ``T >= 0``, in the units of the values (default 1.0). Of two
            candidates a value gap ``Δ`` apart, the better is ranked first with probability
            ``1 / (1 + exp(−Δ/T))`` (0.73 at ``Δ = T``). ``T = 0`` is :class:`TopKJudge`.
        sigma: Thurstone's noise ``σ >= 0`` added to each value (default 1.0); the better of two
            is ranked first with probability ``Φ(Δ / (σ√2))``. ``σ = 0`` is :class:`TopKJudge`.
        swap_prob: probability, per call, of then swapping one uniformly chosen adjacent pair
            (among the ranked positions and the pair across the cut at ``k``).
        seed: an int seeding the judge's own CPU generator, or a CPU ``torch.Generator`` to draw
            from (its state advances with every call).

    Giving ``sigma`` to a Plackett–Luce judge or ``temperature`` to a Thurstone judge is an error
    rather than silently ignored. Each call draws ``m + 2`` numbers from the generator, so a
    judge built with the same seed answers the same sequence of rounds identically.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], Any],
        *,
        k: int | None = None,
        maximize: bool = False,
        model: NoiseModel = "plackett-luce",
        temperature: float | None = None,
        sigma: float | None = None,
        swap_prob: float = 0.0,
        seed: int | torch.Generator = 0,
    ) -> None:
        if not callable(fn):
            raise ValueError(f"fn must be a callable from candidates to values; got {fn!r}")
        if model not in _MODELS:
            raise ValueError(f"unknown noise model {model!r}; valid models: {', '.join(_MODELS)}")
        if model == "plackett-luce":
            if sigma is not None:
                raise ValueError(
                    f"sigma={sigma!r} is Thurstone's noise; a Plackett–Luce judge takes temperature"
                )
            scale = check_nonneg("temperature", 1.0 if temperature is None else temperature)
        else:
            if temperature is not None:
                raise ValueError(
                    f"temperature={temperature!r} is Plackett–Luce's; a Thurstone judge takes sigma"
                )
            scale = check_nonneg("sigma", 1.0 if sigma is None else sigma)
        p = check_nonneg("swap_prob", swap_prob)
        if p > 1:
            raise ValueError(f"swap_prob is a probability in [0, 1]; got swap_prob={swap_prob!r}")
        self.fn = fn
        self.k = _check_k(k)
        self.maximize = check_flag("maximize", maximize)
        self.model: str = model
        self.scale = scale  # T or σ
        self.swap_prob = p
        self.generator = _make_generator(seed)

    def __repr__(self) -> str:
        noise = "temperature" if self.model == "plackett-luce" else "sigma"
        return (
            f"NoisyJudge({self.fn!r}, k={self.k}, maximize={self.maximize}, model={self.model!r}, "
            f"{noise}={self.scale}, swap_prob={self.swap_prob})"
        )

    def __call__(self, X: torch.Tensor) -> Ranking:
        """A random ranking of the ``m × ...`` candidates ``X``, best first (length ``k``/``m``)."""
        m = _num_candidates(X)
        values = _as_values(self.fn(X), m, source="fn(X)")
        r = _noisy_ranking(
            values,
            self.k,
            maximize=self.maximize,
            model=self.model,
            scale=self.scale,
            swap_prob=self.swap_prob,
            generator=self.generator,
        )
        return validate_ranking(r, m)


class ScoreJudge:
    """A judge whose values come from a score model looking at the rendered candidates.

    ``score_model(render(X))`` must give ``(m,)`` scores (tensor on any device, array or list):
    e.g. ``render`` is a task's ``render`` producing images and ``score_model`` a classifier's
    probability of the wanted class. Without ``render`` the model sees ``X`` itself.

    Args:
        score_model: rendered candidates -> ``(m,)`` scores.
        render: candidates -> whatever ``score_model`` takes; ``None`` passes ``X`` through.
        k: how many to rank; ``None`` ranks all ``m``.
        maximize: ``True`` (default): higher scores are better.
        noise: Thurstone noise ``σ >= 0`` added to the scores before ranking (default 0: exact;
            ties then go to the lower index).
        swap_prob: as in :class:`NoisyJudge`.
        seed: an int or CPU ``torch.Generator`` for the noise (unused while both are 0).
    """

    def __init__(
        self,
        score_model: Callable[[Any], Any],
        *,
        render: Callable[[torch.Tensor], Any] | None = None,
        k: int | None = None,
        maximize: bool = True,
        noise: float = 0.0,
        swap_prob: float = 0.0,
        seed: int | torch.Generator = 0,
    ) -> None:
        if not callable(score_model):
            raise ValueError(f"score_model must be callable; got {score_model!r}")
        if render is not None and not callable(render):
            raise ValueError(f"render must be None or callable; got {render!r}")
        p = check_nonneg("swap_prob", swap_prob)
        if p > 1:
            raise ValueError(f"swap_prob is a probability in [0, 1]; got swap_prob={swap_prob!r}")
        self.score_model = score_model
        self.render = render
        self.k = _check_k(k)
        self.maximize = check_flag("maximize", maximize)
        self.noise = check_nonneg("noise", noise)
        self.swap_prob = p
        self.generator = _make_generator(seed)

    def __repr__(self) -> str:
        return (
            f"ScoreJudge({self.score_model!r}, render={self.render!r}, k={self.k}, "
            f"maximize={self.maximize}, noise={self.noise}, swap_prob={self.swap_prob})"
        )

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        """The model's ``(m,)`` scores of the candidates, as a CPU tensor (no noise)."""
        m = _num_candidates(X)
        shown = X if self.render is None else self.render(X)
        return _as_values(self.score_model(shown), m, source="score_model(render(X))")

    def __call__(self, X: torch.Tensor) -> Ranking:
        """The ranking of the ``m × ...`` candidates ``X`` by score, best first."""
        m = _num_candidates(X)
        values = self.scores(X)
        if self.noise == 0.0 and self.swap_prob == 0.0:
            # The exact judge draws nothing, so its generator is left untouched.
            r = _rank_from_values(values, self.k, self.maximize)
        else:
            r = _noisy_ranking(
                values,
                self.k,
                maximize=self.maximize,
                model="thurstone",
                scale=self.noise,
                swap_prob=self.swap_prob,
                generator=self.generator,
            )
        return validate_ranking(r, m)
