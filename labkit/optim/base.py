"""The one ask/tell contract that every labkit optimizer honours.

```
X = opt.ask()        # (m, *shape) tensor of candidates on opt's device, in opt's dtype
opt.tell(ranking)    # row indices of X, best first, 1 <= len <= m  (labkit.ranking)
opt.tell(ranking, ties=(2,))   # ... and ranking[2] is as good as ranking[1]
opt.x                # the current iterate, shape `shape`
sd = opt.state_dict(); other.load_state_dict(sd)
```

Rules shared by all optimizers:

* ``ask()`` while a round is pending returns that same round again (a widget may redraw); the
  round ends only with a successful ``tell``.
* ``tell`` validates the ranking and its ties first and raises ``ValueError`` before changing
  anything, so a refused ranking leaves the optimizer exactly as it was and the same round can be
  answered again.
* Ties (:func:`labkit.ranking.validate_ties`) are part of the answer: an optimizer uses them or
  says in its docstring what it does with them. "None of these is better than the current one"
  is no separate call: in a round that contains the current iterate it *is* the ranking
  ``(opt.incumbent_index,)`` (the incumbent beats every other candidate).
* All randomness comes from the optimizer's own seed / ``torch.Generator``: a run is determined by
  its seed and the rankings it was told, and replaying them gives the same iterate bit for bit on
  the same device.
* ``incumbent_index`` names the row of the pending round that *is* the current iterate, when the
  round contains it (line-search rounds do), so a user interface can mark it; otherwise ``None``.

What a caller may read, with the default an optimizer keeps unless it says otherwise:

===================  ==========  ==============================================================
attribute            default     meaning
===================  ==========  ==============================================================
``k``                ``None``    how many of a round's m candidates to ask a judge to rank
                                 (``None``: all m); a hint, ``tell`` takes any length 1..m
``round_kind``       "gradient"  what the pending (or next) round is: "gradient" (m candidates
                                 to rank), "line_search" (only the winner counts: show k=1),
                                 "preference"; logged with every round
``last_step``        ``None``    length of the last move, for a progress plot (``None``: the
                                 optimizer does not measure one)
``round_seed``       ``None``    seed of the pending round's draws, logged to check a replay
``seed``             ``None``    the seed all of its randomness comes from (``None``: a
                                 generator was handed in, or it draws nothing)
``incumbent_index``  ``None``    see above
===================  ==========  ==============================================================

Writing an optimizer: subclass :class:`RankOptimizer`, implement ``x``, ``_ask``, ``_tell``,
``state_dict`` and ``load_state_dict``. Randomness is the base class's: call
``self._init_randomness(seed=..., generator=...)`` once in ``__init__``, take each round's seed
from ``self._pending_round_seed()`` in ``_ask`` (and set ``self._round_seed = None`` once the
round is told), and begin the state dict with ``self._state_head(...)`` and its loading with
``self._load_state_head(state, ...)``: they hold what every drawing optimizer saves (its name,
shape and m, the generator, the rounds, the pending round's seed). An optimizer whose randomness
lives elsewhere (CMAES: pycma's NumPy source) sets ``self._seed`` to the seed it uses instead,
so ``seed`` reports it.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from labkit._checks import check_flag, check_nonneg, integer
from labkit.ranking import Ranking, Ties, validate_ranking, validate_ties

__all__ = [
    "OptimizeResult",
    "RankOptimizer",
    "as_start_point",
    "atomic_load",
    "check_flag",
    "check_nonneg",
    "make_generator",
    "optimize",
]


def as_start_point(x0: Any, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Turn ``x0`` into a float tensor, refusing empty or non-finite starting points.

    A tensor keeps its device; anything else becomes a CPU tensor. The dtype is ``x0``'s when it is
    a floating tensor, else ``dtype`` or float32 (the CPU default of the house).
    """
    if isinstance(x0, torch.Tensor):
        t = x0.detach()
        if not t.dtype.is_floating_point:
            t = t.to(dtype or torch.float32)
        elif dtype is not None:
            t = t.to(dtype)
    else:
        try:
            t = torch.as_tensor(x0, dtype=dtype or torch.float32)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"x0 must be a tensor or an array of numbers; got {x0!r}") from err
    if t.numel() == 0:
        raise ValueError(f"x0 must have at least one element; got shape {tuple(t.shape)}")
    # Validation of the starting point is the one place a host sync is fine: it runs once.
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"x0 must be finite; x0{bad} = {t[tuple(bad)].item()}")
    return t.clone()


def restored(saved: Any, like: torch.Tensor) -> torch.Tensor:
    """A tensor from a state dict, as a fresh copy on ``like``'s device and in its dtype."""
    return torch.as_tensor(saved).to(device=like.device, dtype=like.dtype).clone()


def make_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """An optimizer's or a judge's own CPU generator, from an explicit seed or one handed in.

    ``seed=None`` and no generator draws a fresh seed from the OS; the drawn seed can be read
    back (``opt.seed``) so such a run can still be replayed. The generator lives on the CPU:
    per-round seeds and a judge's noise are drawn there, the same on every device.
    """
    if generator is not None and seed is not None:
        raise ValueError("give either seed or generator, not both")
    if generator is not None:
        if generator.device.type != "cpu":
            raise ValueError(
                f"the generator draws per-round seeds or noise and must live on the CPU; "
                f"got one on {generator.device}"
            )
        return generator
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    else:
        seed_int = integer(seed)
        if seed_int is None or not 0 <= seed_int < 2**64:
            raise ValueError(f"seed must be an int in 0..2**64-1; got {seed!r}")
        g.manual_seed(seed_int)
    return g


_SEED_BOUND = 2**63 - 1


def device_normal(
    seed: int, shape: tuple[int, ...], *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Standard normal tensor of ``shape`` drawn on ``device`` from a generator seeded ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return torch.randn(shape, generator=g, device=device, dtype=dtype)


class RankOptimizer(ABC):
    """Base class of the ask/tell contract (see the module docstring).

    Subclasses implement ``_ask`` and ``_tell`` and the state methods; the base class owns the
    round bookkeeping, ranking validation and the source of randomness, so every optimizer
    refuses bad input the same way and is seeded the same way.
    """

    #: How many of a round's m candidates a judge is asked to rank (``None``: all of them).
    k: int | None = None
    #: Length of the last move, for a progress plot (``None``: not measured).
    last_step: float | None = None

    def __init__(self) -> None:
        self._pending: torch.Tensor | None = None
        self.rounds: int = 0  # completed rounds
        # The source of randomness (_init_randomness), or a seed kept by the subclass (CMAES).
        self._generator: torch.Generator | None = None
        self._generator_given = False  # a generator handed in: its state, not a seed, counts
        self._seed: int | None = None
        # The seed of the pending round's draws (_pending_round_seed), None between rounds.
        self._round_seed: int | None = None

    # -- randomness, for subclasses -----------------------------------------------------------
    def _init_randomness(self, *, seed: int | None, generator: torch.Generator | None) -> None:
        """Make the optimizer's own CPU generator from ``seed`` or the ``generator`` handed in
        (:func:`make_generator`); an optimizer that draws calls this once in ``__init__``."""
        self._generator = make_generator(seed, generator)
        self._generator_given = generator is not None

    @property
    def _rng(self) -> torch.Generator:
        """The generator made by :meth:`_init_randomness` (its state goes in the state dict)."""
        if self._generator is None:
            raise RuntimeError(
                f"{type(self).__name__} draws from a generator but never made one: call "
                f"self._init_randomness(seed=..., generator=...) in __init__"
            )
        return self._generator

    def _draw_round_seed(self) -> int:
        """Draw one per-round seed from the optimizer's CPU generator (a CPU op, no device sync)."""
        return int(torch.randint(0, _SEED_BOUND, (1,), generator=self._rng)[0])

    def _pending_round_seed(self) -> int:
        """The seed of the round being asked: the one a loaded state restored, else a new draw.

        Keeping a restored seed is what makes a loaded pending round the very round that was
        saved: its candidates are drawn again from it.
        """
        if self._round_seed is None:
            self._round_seed = self._draw_round_seed()
        return self._round_seed

    def _state_head(
        self, shape: tuple[int, ...], m: int, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The part of a state dict every drawing optimizer saves: what
        :meth:`_check_state_fits` checks (name, shape, m and, when given, the config), the
        generator's state, the completed rounds and the pending round's seed."""
        head: dict[str, Any] = {"algorithm": type(self).__name__, "shape": tuple(shape), "m": m}
        if config is not None:
            head["config"] = config
        head.update(
            generator=self._rng.get_state(), rounds=self.rounds, round_seed=self._round_seed
        )
        return head

    def _load_state_head(
        self, state: Any, shape: tuple[int, ...], m: int, config: dict[str, Any] | None = None
    ) -> None:
        """Refuse a state that does not fit (:meth:`_check_state_fits`), then restore the rest of
        what :meth:`_state_head` saved. The pending round is dropped: the caller draws it again
        once its own fields are restored."""
        self._check_state_fits(state, shape, m, config)
        self._rng.set_state(state["generator"])
        self.rounds = int(state["rounds"])
        self._round_seed = state["round_seed"]
        self._pending = None

    # -- the contract -------------------------------------------------------------------------
    @property
    @abstractmethod
    def x(self) -> torch.Tensor:
        """The current iterate (shape of x0, on the optimizer's device)."""

    @property
    def incumbent_index(self) -> int | None:
        """Row of the pending round that is the current iterate, or ``None``."""
        return None

    @property
    def round_kind(self) -> str:
        """Kind of the pending (or next) round; ``"gradient"``: m candidates to rank."""
        return "gradient"

    @property
    def round_seed(self) -> int | None:
        """The seed the pending round's candidates were drawn from (``None``: none is pending,
        or the optimizer draws no seed per round).

        Logged with each round so a replay can check it draws the same candidates.
        """
        return self._round_seed

    @property
    def seed(self) -> int | None:
        """The seed all of this optimizer's randomness comes from (``None``: unknown or none).

        With ``seed=None`` it was drawn from the OS; making the optimizer again with
        ``seed=opt.seed`` (and the same other arguments) replays the same run. A session logs
        it, so a resume can say which seed to use. ``None`` when a ``generator`` was handed in
        (its state, not a seed, is what counts) or the optimizer has no randomness.
        """
        if self._seed is not None:
            return int(self._seed)
        if self._generator is None or self._generator_given:
            return None
        return int(self._generator.initial_seed())

    @seed.setter
    def seed(self, value: int | None) -> None:
        # A subclass may keep its own seed (as CMAES does); the property then just reports it.
        self._seed = value

    def _fingerprint_state(self) -> dict[str, Any]:
        """What identifies how this optimizer was made, for a session's resume check.

        The state dict by default; an optimizer whose state dict holds incidental bytes (two
        identically made ones would differ) returns the parts that matter instead.
        """
        return self.state_dict()

    def ask(self) -> torch.Tensor:
        """Candidates of the current round, an ``m × *shape`` tensor on the optimizer's device.

        Calling ``ask`` again before ``tell`` returns the same candidates.
        """
        if self._pending is None:
            self._pending = self._ask()
        return self._pending

    def tell(
        self,
        ranking: Sequence[int] | torch.Tensor,
        *,
        ties: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        """Tell the ranking of the pending round: row indices of ``ask()``'s tensor, best first.

        ``ties`` (optional): positions p in 1..k−1 of the ranking (k = its length) where
        ``ranking[p]`` is as good as ``ranking[p − 1]``, ascending. Raises ``ValueError`` (and
        changes nothing) when no round is pending or the ranking or the ties break the rules of
        :func:`labkit.ranking.validate_ranking` and :func:`labkit.ranking.validate_ties`.
        """
        if self._pending is None:
            raise ValueError("tell() needs a pending round: call ask() first")
        r = validate_ranking(ranking, self._pending.shape[0])
        t = validate_ties(ties, len(r))
        self._tell(r, t)
        self._pending = None
        self.rounds += 1

    @property
    def pending(self) -> bool:
        """Whether a round has been asked and not yet told."""
        return self._pending is not None

    @abstractmethod
    def _ask(self) -> torch.Tensor: ...

    @abstractmethod
    def _tell(self, ranking: Ranking, ties: Ties) -> None:
        """Apply a *validated* ranking of the pending round and its *validated* ties (may be ())."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run identically (tensors and plain Python)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by ``state_dict`` (a pending round is restored too)."""

    def _check_state_fits(
        self,
        state: Any,
        shape: tuple[int, ...],
        m: int,
        config: dict[str, Any] | None = None,
    ) -> None:
        """Refuse a state dict of another optimizer, or made for another shape of x or another
        m, or (when ``config`` is given) with another ``state["config"]`` (before touching
        anything)."""
        name = type(self).__name__
        if not isinstance(state, dict):
            raise ValueError(
                f"a state dict is the dict {name}.state_dict() returns; got {type(state).__name__}"
            )
        if state.get("algorithm") != name:
            raise ValueError(
                f"not a {name} state dict (it says algorithm={state.get('algorithm')!r})"
            )
        if tuple(state["shape"]) != tuple(shape) or int(state["m"]) != m:
            raise ValueError(
                f"state is for shape {tuple(state['shape'])} with m={state['m']}, but this "
                f"optimizer has shape {tuple(shape)} with m={m}"
            )
        if config is not None and state["config"] != config:
            raise ValueError(
                f"state dict was made with config {state['config']}, "
                f"but this optimizer has {config}"
            )


def atomic_load(
    load: Callable[[Any, dict[str, Any]], None],
) -> Callable[[Any, dict[str, Any]], None]:
    """Make a ``load_state_dict`` all or nothing: a state it refuses leaves the optimizer as it was.

    The state is saved first; if loading fails part way (a missing key, a malformed generator
    state, a tensor of the wrong size), the saved state is loaded back and the failure is raised
    as a ValueError that says the optimizer is unchanged.
    """

    @functools.wraps(load)
    def wrapper(self: Any, state: dict[str, Any]) -> None:
        backup = self.state_dict()
        try:
            load(self, state)
        except Exception as exc:
            load(self, backup)
            if isinstance(exc, ValueError):
                raise
            raise ValueError(
                f"state dict refused ({type(exc).__name__}: {exc}); the optimizer is unchanged"
            ) from exc

    return wrapper


@dataclass
class OptimizeResult:
    """What :func:`optimize` returns."""

    x: torch.Tensor
    rounds: int
    history: list[Ranking] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def optimize(
    opt: RankOptimizer,
    judge: Callable[[torch.Tensor], Sequence[int]],
    rounds: int,
    *,
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callback: Callable[[RankOptimizer, Ranking], None] | None = None,
) -> OptimizeResult:
    """Run ``rounds`` ask/judge/tell rounds; the generic loop written once on top of the contract.

    ``judge`` maps the ``m × *shape`` candidates to a ranking (best first). ``objective``, when
    given, is evaluated on the iterate after each round (for curves only; the optimizer never sees
    it).
    """
    n_rounds = integer(rounds)
    if n_rounds is None or n_rounds < 0:
        raise ValueError(f"rounds must be an int >= 0; got {rounds!r}")
    if not callable(judge):
        raise ValueError(f"judge must be callable (candidates -> ranking); got {judge!r}")
    history: list[Ranking] = []
    values: list[float] = []
    for _ in range(n_rounds):
        X = opt.ask()
        r = validate_ranking(judge(X), X.shape[0])
        opt.tell(r)
        history.append(r)
        if objective is not None:
            values.append(float(objective(opt.x.unsqueeze(0))[0]))
        if callback is not None:
            callback(opt, r)
    return OptimizeResult(x=opt.x.clone(), rounds=opt.rounds, history=history, values=values)
