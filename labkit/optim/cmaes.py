"""CMA-ES through pycma, told rankings only.

pycma's ``tell(solutions, values)`` already uses nothing but the *order* of the values to update
the mean, the step size and the covariance (its documentation says so); the values are otherwise
only used for bookkeeping and termination checks that we do not call. So a ranking can drive it
exactly: we turn the ranking into pseudo-values

    ranked position p  ->  p          (p = 0 is the best)
    unranked candidate ->  k          (all m − k of them tied, worse than every ranked one)

and tell pycma those, with the very solutions (float64 NumPy arrays) it handed out in ``ask``.
With a full ranking (k = m) this is bit for bit what pycma does when told the true values.
With k < m the unranked candidates tie; pycma orders ties by ``numpy.argsort``, deterministically,
so when fewer than μ = m // 2 candidates are ranked some unranked ones fill the parent set in
that (arbitrary but reproducible) order.

Ties. pycma has no notion of a tie: it sorts the values and gives each rank its own
recombination weight. So CMAES ignores ties: candidates told tied (``tell(ranking, ties=...)``)
keep the pseudo-values of their positions, and pycma weights them as if the person had preferred
the first of them. (Equal pseudo-values would not make them equal either: pycma would order them
by ``numpy.argsort``, whose order of equal values is not the row order and may differ between
NumPy versions and CPUs.) "None of these is better than the current one" needs a round that
contains the incumbent, which CMA-ES rounds never do.

Randomness. pycma draws its normal samples through the option ``randn`` — a callable
``randn(lam, N)`` returning a ``(lam, N)`` array — which defaults to ``numpy.random.randn`` and the
global NumPy state. We give it a picklable :class:`_NumpyRandn` that owns a
``numpy.random.Generator`` seeded from ``seed``, so a run depends only on its seed and rankings and
leaves the global NumPy state alone.

Large dimensions. A full covariance costs O(d²) memory and O(d³) per eigendecomposition, which is
hopeless for, say, diffusion latents (d = 16384). When d > 100 we pass ``CMA_diagonal=True``
(separable CMA-ES: a diagonal covariance, O(d) per sample) unless ``options`` says otherwise.

State. :meth:`CMAES.state_dict` stores the ``CMAEvolutionStrategy`` object pickled into bytes,
always as it was *before* the pending round was sampled; a pending round is restored by asking
again, which draws the same candidates from the restored random source. (Re-asking rather than
pickling the asked state matters: pycma files asked solutions under Python's salted ``hash`` of
their bytes, which differs between processes.) Unpickling runs code: load only state dicts you
made yourself.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from labkit._checks import check_positive, integer
from labkit.optim.base import RankOptimizer, as_start_point, atomic_load, make_generator
from labkit.ranking import Ranking, Ties

__all__ = ["CMAES"]

#: Above this dimension the covariance is kept diagonal (pycma's ``CMA_diagonal=True``).
DIAGONAL_ABOVE = 100

# Options that the constructor's own arguments set; giving them in ``options`` too is ambiguous.
_RESERVED_OPTIONS = {"randn": "seed", "seed": "seed", "popsize": "m"}


def _option_key(value: Any) -> str:
    """A stable text of one pycma option for the resume fingerprint.

    ``repr`` would shorten a long array to ``...`` (two different vectors would look the same)
    and put a memory address in a function's text (two identical optimizers would differ).
    """
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return f"ndarray({value.dtype}, {value.shape}, {digest})"
    if isinstance(value, (list, tuple)) and len(value) > 50:
        return _option_key(np.asarray(value))
    if callable(value):
        return f"callable {getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
    return repr(value)


class _NumpyRandn:
    """pycma's ``randn`` option backed by a private ``numpy.random.Generator``.

    ``randn(lam, N)`` returns a ``(lam, N)`` float64 array of standard normal numbers. Being a
    module-level class holding a NumPy generator, it pickles along with the strategy object.
    """

    def __init__(self, seed: int) -> None:
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(size=shape)


class CMAES(RankOptimizer):
    """CMA-ES (pycma's ``CMAEvolutionStrategy``) behind the ask/tell ranking contract.

    Args:
        x0: starting mean, any shape (flattened for pycma, reshaped back for you); its device
            and floating dtype are those of the candidates and of ``x``.
        sigma: initial step size σ₀ (pycma's ``sigma0``), in the units of ``x0``.
        m: population size λ, the number of candidates per round (≥ 2); ``None`` takes pycma's
            default ``4 + ⌊3 ln d⌋``.
        seed: seed of the private normal-number source (``None``: drawn from the OS; readable
            afterwards as ``opt.seed``).
        options: further pycma options (``cma.CMAOptions``), e.g. ``{"CMA_diagonal": False}``.
            ``randn``, ``seed`` and ``popsize`` are set by the arguments above and refused here.

    Attributes:
        es: the wrapped ``cma.CMAEvolutionStrategy`` (for inspection: ``es.sigma``, ``es.C``).
        m: the population size actually used.
        seed: the seed actually used.

    ``ask()`` returns an ``m × *x0.shape`` tensor; ``x`` is pycma's distribution mean ``es.mean``.
    Computation happens in float64 NumPy on the CPU (that is pycma); only the candidates and ``x``
    are moved to ``x0``'s device and dtype.
    """

    def __init__(
        self,
        x0: Any,
        *,
        sigma: float,
        m: int | None = None,
        seed: int | None = 0,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        start = as_start_point(x0)
        self._shape = tuple(start.shape)
        self._device = start.device
        self._dtype = start.dtype
        sigma0 = check_positive("sigma", sigma)
        # make_generator checks the seed (and draws one from the OS for seed=None); its initial
        # seed becomes the seed of the NumPy source pycma samples from, kept as the base class's
        # _seed so that ``opt.seed`` reports it.
        self._seed: int = make_generator(seed, None).initial_seed()
        # What the resume fingerprint needs besides x0, sigma0, m and the seed (see
        # _fingerprint_state): the options as given.
        self._options_repr = repr(
            sorted((str(k), _option_key(v)) for k, v in (options or {}).items())
        )

        d = start.numel()
        opts: dict[str, Any] = {
            "verbose": -9,  # no console output,
            "verb_disp": 0,
            "verb_log": 0,  # and no outcmaes/ files written to the working directory
            "CMA_diagonal": d > DIAGONAL_ABOVE,
        }
        if options is not None:
            for key in options:
                if key in _RESERVED_OPTIONS:
                    raise ValueError(
                        f"option {key!r} is set by the argument {_RESERVED_OPTIONS[key]!r} of "
                        f"CMAES, not through options"
                    )
            opts.update(options)
        if m is not None:
            m_int = integer(m)
            if m_int is None or m_int < 2:
                raise ValueError(
                    f"m (the population size) must be an int >= 2, since CMA-ES recombines the "
                    f"best m // 2 >= 1; got {m!r}"
                )
            opts["popsize"] = m_int
        opts["randn"] = _NumpyRandn(self._seed)

        mean0 = start.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy()
        # Imported here, not at the top: pycma pulls in scipy.stats (~1 s), which every
        # `import labkit` (an app's kernel among them) would otherwise pay for nothing.
        import cma

        self.es = cma.CMAEvolutionStrategy(mean0.copy(), sigma0, opts)
        self.m: int = int(self.es.popsize)
        # The strategy as it was before the pending round was sampled (see the module docstring).
        self._before_ask: bytes | None = None
        self._solutions: list[np.ndarray] | None = None

    # -- the contract -------------------------------------------------------------------------
    @property
    def x(self) -> torch.Tensor:
        """pycma's current mean, shape of ``x0``, on ``x0``'s device and dtype (a new tensor)."""
        mean = np.asarray(self.es.mean, dtype=np.float64).reshape(self._shape)
        return torch.from_numpy(mean.copy()).to(device=self._device, dtype=self._dtype)

    @property
    def sigma(self) -> float:
        """pycma's current overall step size σ."""
        return float(self.es.sigma)

    def _ask(self) -> torch.Tensor:
        self._before_ask = pickle.dumps(self.es)
        return self._sample()

    def _sample(self) -> torch.Tensor:
        """Ask pycma for a population; keep its float64 solutions to tell them back unchanged."""
        self._solutions = self.es.ask(self.m)
        X = np.stack([np.asarray(s, dtype=np.float64) for s in self._solutions])
        X = X.reshape(self.m, *self._shape)
        return torch.from_numpy(X).to(device=self._device, dtype=self._dtype)

    def _tell(self, ranking: Ranking, ties: Ties) -> None:
        assert self._solutions is not None
        k = len(ranking)
        # Pseudo-values: ranked position p -> p, the m − k unranked tie at k (see module doc).
        # Ties are told as the order given: pycma has none (see the module docstring).
        values = np.full(self.m, float(k))
        values[list(ranking)] = np.arange(k, dtype=np.float64)
        self.es.tell(self._solutions, values.tolist())
        self._solutions = None
        self._before_ask = None

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The pickled strategy (before any pending round was sampled) and the round counters.

        Unpickling runs code: only load state dicts from a trusted source.
        """
        es_bytes = self._before_ask if self.pending else pickle.dumps(self.es)
        return {
            "algorithm": "CMAES",
            "es": es_bytes,
            "pending": self.pending,
            "rounds": self.rounds,
            "seed": self._seed,
            "m": self.m,
            "shape": self._shape,
        }

    def _fingerprint_state(self) -> dict[str, Any]:
        # The pickled strategy differs between two identically made CMAES (pycma keeps a
        # time-based seed option and timers in it), so identify the strategy by what decides
        # its samples: mean, σ, the covariance's diagonal, the counters, the seed and options.
        return {
            "algorithm": "CMAES",
            "seed": self._seed,
            "m": self.m,
            "shape": self._shape,
            "dtype": str(self._dtype),
            "mean": np.asarray(self.es.mean, dtype=np.float64).tolist(),
            "sigma": float(self.es.sigma),
            "diagonal": np.asarray(self.es.sm.variances, dtype=np.float64).tolist(),
            "rounds": self.rounds,
            "pending": self.pending,
            "options": self._options_repr,
        }

    @atomic_load
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`; a pending round is sampled again, the same."""
        self._check_state_fits(state, self._shape, self.m)
        es = pickle.loads(state["es"])
        import cma

        if not isinstance(es, cma.CMAEvolutionStrategy):
            raise ValueError(f"state['es'] must pickle a CMAEvolutionStrategy; got {type(es)}")
        self.es = es
        self._seed = int(state["seed"])
        self.rounds = int(state["rounds"])
        self._solutions = None
        self._before_ask = None
        self._pending = None
        if state["pending"]:
            self._before_ask = state["es"]
            self._pending = self._sample()
