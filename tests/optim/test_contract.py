"""The ask/tell contract of labkit.optim.base, checked against every optimizer.

Each optimizer appears once in ``FACTORIES``; every test here runs against each of them. The
checks are those of the contract: shapes, devices and dtypes; a pending round asked twice is the
same round; refused input (a bad ranking, a tell without an ask, a non-finite x0) raises
``ValueError`` and changes nothing; a run is a function of its seed and its rankings (replay is bit
for bit); ``state_dict`` continues a run identically, with or without a pending round; and a
handful of rounds of an exact judge on a sphere make progress.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.optim.base import RankOptimizer, optimize
from labkit.optim.cmaes import CMAES
from labkit.optim.image_thompson import ImageThompson
from labkit.optim.preference import PreferenceThompson
from labkit.optim.prior import PriorSampling
from labkit.optim.zo_sgd import ZOSGD

M = 6  # candidates per round for every optimizer (even, for ZOSGD's ± pairs)

Factory = Callable[..., RankOptimizer]


def _zo_ranksgd(x0: Any, *, m: int = M, seed: int = 0, **kw: Any) -> RankOptimizer:
    # Imported here so the other optimizers are checked even while this one is being written.
    mod = pytest.importorskip("labkit.optim.zo_ranksgd")
    return mod.ZORankSGD(x0, lr=0.1, mu=0.05, m=m, seed=seed, **kw)


def _zo_ranksgd_line_search(x0: Any, *, m: int = M, seed: int = 0) -> RankOptimizer:
    return _zo_ranksgd(x0, m=m, seed=seed, line_search=2)


def _cmaes(x0: Any, *, m: int = M, seed: int = 0) -> RankOptimizer:
    return CMAES(x0, sigma=0.5, m=m, seed=seed)


def _zo_sgd(x0: Any, *, m: int = M, seed: int = 0) -> RankOptimizer:
    return ZOSGD(x0, lr=0.01, mu=0.05, m=m, seed=seed)


def _prior(x0: Any, *, m: int = M, seed: int = 0) -> RankOptimizer:
    return PriorSampling(x0, sigma=1.0, m=m, seed=seed)


def _preference(x0: Any, *, m: int = M, seed: int = 0) -> RankOptimizer:
    return PreferenceThompson(x0, m=m, seed=seed, geometry="sphere")


def _preference_local(x0: Any, *, m: int = M, seed: int = 0) -> RankOptimizer:
    return PreferenceThompson(x0, m=m, seed=seed, geometry="local", scale=0.3, forget=0.7)


def _image_thompson(x0: Any, *, m: int = M, seed: int = 0) -> RankOptimizer:
    # A stand-in renderer (any shape in, one "image" per row out), bent so it is not linear.
    return ImageThompson(x0, view=lambda X: torch.sin(0.7 * X.flatten(1)), pool=12, m=m, seed=seed)


FACTORIES: dict[str, Factory] = {
    "ImageThompson": _image_thompson,
    "ZORankSGD": _zo_ranksgd,
    "ZORankSGD-line-search": _zo_ranksgd_line_search,
    "CMAES": _cmaes,
    "ZOSGD": _zo_sgd,
    "PriorSampling": _prior,
    "PreferenceThompson": _preference,
    "PreferenceThompson-local": _preference_local,
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


# -- helpers -----------------------------------------------------------------------------------
TARGET = 0.5


def _sphere(X: torch.Tensor) -> torch.Tensor:
    """f(x) = ‖x − 0.5‖² for each row of an ``n × *shape`` batch; returns ``(n,)``."""
    return ((X - TARGET) ** 2).flatten(1).sum(1)


def _exact_judge(X: torch.Tensor, k: int | None = None) -> list[int]:
    """Top-k of the round by the sphere value, best (lowest) first; ties by row index."""
    order = torch.argsort(_sphere(X), stable=True)
    return order[:k].tolist()


def _random_rankings(seed: int) -> Callable[[int], list[int]]:
    """A source of random rankings of random lengths 1..n for rounds of n candidates."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> list[int]:
        k = int(rng.integers(1, n + 1))
        return [int(i) for i in rng.permutation(n)[:k]]

    return draw


def _assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Deep equality of two state dicts, tensors compared exactly (dtype, shape and bits)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.device == b.device, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(u, v, f"{where}[{i}]")
    elif isinstance(a, bytes):  # e.g. a pickled object: do not print kilobytes on failure
        assert isinstance(b, bytes) and a == b, f"{where}: {len(a)} bytes differ from {len(b)}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _run(opt: RankOptimizer, rankings: Callable[[int], list[int]], rounds: int) -> list[Any]:
    """Play ``rounds`` rounds; return what happened (candidates and rankings) for comparison."""
    log: list[Any] = []
    for _ in range(rounds):
        X = opt.ask().clone()
        seed = opt.round_seed
        assert seed is None or (isinstance(seed, int) and not isinstance(seed, bool))
        r = rankings(X.shape[0])
        opt.tell(r)
        log.append((X, seed, r))
    return log


def _assert_same_run(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for (Xa, sa, ra), (Xb, sb, rb) in zip(a, b, strict=True):
        assert ra == rb
        assert sa == sb
        assert torch.equal(Xa, Xb)


# -- shapes, devices, dtypes -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 4)])
def test_ask_shape_device_dtype(make: Factory, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    x0 = torch.linspace(-1.0, 1.0, int(np.prod(shape)), dtype=dtype).reshape(shape)
    opt = make(x0)
    draw = _random_rankings(0)
    for i in range(4):
        X = opt.ask()
        if i == 0:
            assert X.shape == (M, *shape)
        assert X.shape[1:] == shape and 1 <= X.shape[0] <= M
        assert X.dtype == dtype and X.device == x0.device
        assert bool(torch.isfinite(X).all())
        idx = opt.incumbent_index
        if idx is not None:  # the row that *is* the iterate, when the round shows it
            assert torch.equal(X[idx], opt.x)
        opt.tell(draw(X.shape[0]))
        assert opt.x.shape == shape and opt.x.dtype == dtype and opt.x.device == x0.device
        assert opt.rounds == i + 1


def test_ask_twice_is_the_same_round(make: Factory) -> None:
    opt = make(torch.zeros(3, 4))
    assert not opt.pending
    X1 = opt.ask().clone()
    assert opt.pending
    assert torch.equal(opt.ask(), X1)
    opt.tell([0])
    assert not opt.pending
    X2 = opt.ask().clone()
    assert torch.equal(opt.ask(), X2)


def test_tell_before_ask_is_refused(make: Factory) -> None:
    opt = make(torch.zeros(4))
    with pytest.raises(ValueError, match="ask"):
        opt.tell([0])
    opt.ask()
    opt.tell([1, 0])
    with pytest.raises(ValueError, match="ask"):  # the round ended with the successful tell
        opt.tell([1, 0])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_x0_is_refused(make: Factory, bad: float) -> None:
    x0 = torch.zeros(3, 4)
    x0[1, 2] = bad
    with pytest.raises(ValueError, match="finite"):
        make(x0)


# -- bad rankings ------------------------------------------------------------------------------
_index = st.integers(0, M - 1)
_bad_rankings = st.one_of(
    # duplicates
    st.lists(_index, min_size=2, max_size=M).filter(lambda r: len(set(r)) < len(r)),
    # an index out of range
    st.tuples(
        st.lists(_index, max_size=M - 1, unique=True),
        st.one_of(st.integers(max_value=-1), st.integers(min_value=M)),
    ).map(lambda t: [*t[0], t[1]]),
    # empty, in every container the contract accepts
    st.sampled_from([[], (), np.array([], dtype=np.int64), torch.tensor([], dtype=torch.long)]),
    # too long
    st.lists(_index, min_size=M + 1, max_size=2 * M),
    # a float or a bool where an index belongs (even 1.0)
    st.tuples(
        st.lists(_index, max_size=M - 1, unique=True),
        st.one_of(st.floats(allow_nan=True), st.booleans()),
    ).map(lambda t: [t[1], *t[0]]),
    st.sampled_from(
        [
            torch.tensor([0.0, 1.0]),
            np.array([0.0, 1.0]),
            torch.tensor([True, False]),
            np.array([True]),
        ]
    ),
    # two-dimensional
    st.sampled_from(
        [
            [[0, 1], [2, 3]],
            torch.tensor([[0, 1], [2, 3]]),
            np.array([[0], [1]]),
            torch.tensor(0),
            3,
            "012",
            None,
        ]
    ),
    # unordered: a set or a dict has no "best first"
    st.sampled_from([{2, 0, 1}, frozenset({0}), {0: "best", 1: "next"}, {}.keys()]),
)


@pytest.mark.parametrize("name", sorted(FACTORIES))
@settings(max_examples=40, deadline=None)
@given(bad=_bad_rankings)
def test_bad_ranking_is_refused_and_changes_nothing(name: str, bad: Any) -> None:
    opt = FACTORIES[name](torch.zeros(3, 4))
    _run(opt, _random_rankings(1), 2)  # mid-run, not just fresh
    X = opt.ask().clone()
    before = opt.state_dict()
    x_before = opt.x.clone()
    with pytest.raises(ValueError):
        opt.tell(bad)
    _assert_same_state(opt.state_dict(), before)
    assert torch.equal(opt.x, x_before)
    assert opt.pending and opt.rounds == 2
    assert torch.equal(opt.ask(), X)
    opt.tell([0])  # the same round can still be answered
    assert opt.rounds == 3


@pytest.mark.parametrize(
    ("ties", "match"),
    [
        ([0], "tie position 0"),
        ([3], "tie position 3"),
        ([2, 1], "ascending"),
        ([1, 1], "twice"),
        ({1}, "no order"),
        ([True], "bool"),
        ("1", "sequence"),
    ],
)
def test_bad_ties_are_refused_and_change_nothing(make: Factory, ties: Any, match: str) -> None:
    opt = make(torch.zeros(3, 4))
    _run(opt, _random_rankings(1), 2)
    X = opt.ask().clone()
    before = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.tell([2, 0, 1], ties=ties)
    _assert_same_state(opt.state_dict(), before)
    assert opt.pending and opt.rounds == 2 and torch.equal(opt.ask(), X)
    opt.tell([2, 0, 1], ties=[1, 2])  # the same round can still be answered, with ties
    assert opt.rounds == 3


def test_empty_ties_are_no_ties(make: Factory) -> None:
    xs = []
    for ties in ("absent", None, (), np.array([], dtype=np.int64)):
        opt = make(torch.zeros(3, 4), seed=3)
        draw = _random_rankings(3)
        for _ in range(3):
            r = draw(opt.ask().shape[0])
            if isinstance(ties, str):
                opt.tell(r)
            else:
                opt.tell(r, ties=ties)
        xs.append(opt.x.clone())
    for x in xs[1:]:
        assert torch.equal(x, xs[0])


def test_replay_with_ties_is_bit_identical(make: Factory) -> None:
    x0 = torch.linspace(-1.0, 1.0, 12).reshape(3, 4)
    rng = np.random.default_rng(4)
    first = make(x0, seed=7)
    told = []
    for _ in range(8):
        n = first.ask().shape[0]
        r = [int(i) for i in rng.permutation(n)[: int(rng.integers(1, n + 1))]]
        t = [p for p in range(1, len(r)) if rng.random() < 0.5]
        first.tell(r, ties=t)
        told.append((r, t))
    replayed = make(x0.clone(), seed=7)
    for r, t in told:
        replayed.ask()
        replayed.tell(r, ties=t)
    assert torch.equal(replayed.x, first.x)


def test_none_better_is_the_incumbent_first(make: Factory) -> None:
    """ "None of these is better than the current one" is the ranking (incumbent_index,)."""
    opt = make(torch.zeros(3, 4))
    for _ in range(4):  # till a round with an incumbent (if the optimizer ever shows one)
        opt.ask()
        if opt.incumbent_index is not None:
            break
        opt.tell([0])
    if opt.incumbent_index is None:
        pytest.skip(f"{type(opt).__name__} rounds never contain the current iterate")
    X = opt.ask()
    assert torch.equal(X[opt.incumbent_index], opt.x)
    x_before = opt.x.clone()
    opt.tell([opt.incumbent_index])
    assert torch.equal(opt.x, x_before)


@pytest.mark.parametrize("k", range(1, M + 1))
def test_every_ranking_length_is_accepted(make: Factory, k: int) -> None:
    opt = make(torch.zeros(3, 4))
    X = opt.ask()
    n = X.shape[0]
    opt.tell(list(range(min(k, n)))[::-1])
    assert opt.rounds == 1 and not opt.pending
    assert bool(torch.isfinite(opt.x).all())


def test_ranking_containers_are_equivalent(make: Factory) -> None:
    """A list, a tuple, an int64 array and a long tensor of the same indices give the same run."""
    containers: list[Callable[[list[int]], Any]] = [
        list,
        tuple,
        lambda r: np.array(r, dtype=np.int64),
        lambda r: torch.tensor(r, dtype=torch.long),
    ]
    xs = []
    for wrap in containers:
        opt = make(torch.zeros(3, 4), seed=3)
        draw = _random_rankings(3)
        for _ in range(3):
            X = opt.ask()
            opt.tell(wrap(draw(X.shape[0])))
        xs.append(opt.x.clone())
    for x in xs[1:]:
        assert torch.equal(x, xs[0])


# -- reproducibility and state -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_replay_is_bit_identical(make: Factory, dtype: torch.dtype) -> None:
    x0 = torch.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
    first = make(x0, seed=7)
    log = _run(first, _random_rankings(11), 8)
    replayed = make(x0.clone(), seed=7)
    told = iter([r for _, _, r in log])
    log2 = _run(replayed, lambda n: next(told), 8)
    _assert_same_run(log, log2)
    assert torch.equal(replayed.x, first.x)
    assert not torch.equal(first.x, x0)  # the run went somewhere, so equality means something


def test_different_seeds_give_different_candidates(make: Factory) -> None:
    a = make(torch.zeros(3, 4), seed=0).ask()
    b = make(torch.zeros(3, 4), seed=1).ask()
    assert not torch.equal(a, b)


@pytest.mark.parametrize("pending", [False, True])
def test_state_dict_round_trip_continues_identically(make: Factory, pending: bool) -> None:
    x0 = torch.linspace(-1.0, 1.0, 12).reshape(3, 4)
    original = make(x0, seed=5)
    _run(original, _random_rankings(2), 3)
    if pending:
        X_pending = original.ask().clone()
        seed_pending = original.round_seed
    state = original.state_dict()
    stored = pickle.dumps(state)  # as a store would keep it

    # Keep going with the original: the state taken above must not follow along.
    tail = _random_rankings(9)
    log = _run(original, tail, 4)

    restored = make(torch.zeros(3, 4), seed=123)  # another seed: everything comes from the state
    restored.load_state_dict(pickle.loads(stored))
    assert restored.pending == pending and restored.rounds == 3
    if pending:
        assert torch.equal(restored.ask(), X_pending)
        assert restored.round_seed == seed_pending
    log2 = _run(restored, _random_rankings(9), 4)
    _assert_same_run(log, log2)
    assert torch.equal(restored.x, original.x)
    assert restored.rounds == original.rounds == 7


def test_state_dict_is_a_snapshot(make: Factory) -> None:
    """Changing the optimizer afterwards does not change a state dict already taken."""
    opt = make(torch.zeros(3, 4), seed=4)
    _run(opt, _random_rankings(4), 2)
    state = opt.state_dict()
    copy = pickle.loads(pickle.dumps(state))
    _run(opt, _random_rankings(5), 3)
    _assert_same_state(state, copy)


@pytest.mark.parametrize("other", sorted(FACTORIES))
def test_a_state_dict_it_cannot_take_is_refused_and_changes_nothing(
    make: Factory, other: str
) -> None:
    """Another optimizer's state, a malformed one, or not a dict: a ValueError, and the
    optimizer (mid-round) is exactly as it was: the same round can still be answered."""
    opt = make(torch.zeros(3, 4), seed=6)
    _run(opt, _random_rankings(1), 2)
    X = opt.ask().clone()
    before = pickle.loads(pickle.dumps(opt.state_dict()))
    foreign = FACTORIES[other](torch.ones(3, 4), seed=9)
    _run(foreign, _random_rankings(2), 1)
    candidates: list[Any] = [None, [1, 2], {"x": torch.zeros(3, 4)}]
    if type(foreign) is not type(opt):
        candidates.append(foreign.state_dict())
    broken = dict(before)
    broken.pop(next(k for k in before if k not in ("algorithm", "shape", "m")))
    candidates.append(broken)
    late = dict(before)  # fails after the iterate, the generator... were already loaded
    late["rounds"] = "many"
    candidates.append(late)
    for bad in candidates:
        with pytest.raises(ValueError):
            opt.load_state_dict(bad)
        _assert_same_state(opt.state_dict(), before)
        assert torch.equal(opt.ask(), X)
    assert opt.seed is not None


def test_numpy_scalars_are_numbers_and_ints(make: Factory) -> None:
    """Options computed with NumPy (np.int64 from a grid, np.float32 from an array) work like
    Python numbers, and give the same run."""
    x0 = torch.zeros(3, 4)
    plain = make(x0, m=M, seed=2)
    numpy_made = make(x0, m=np.int64(M), seed=np.int64(2))
    assert numpy_made.m == M and type(numpy_made.m) is int
    assert torch.equal(plain.ask(), numpy_made.ask())


def test_optimize_checks_its_arguments(make: Factory) -> None:
    opt = make(torch.zeros(3, 4), seed=0)
    for rounds in (-1, 2.5, "3", True):
        with pytest.raises(ValueError, match="rounds must be an int >= 0"):
            optimize(opt, _exact_judge, rounds)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="judge must be callable"):
        optimize(opt, None, 1)  # type: ignore[arg-type]
    assert opt.rounds == 0 and not opt.pending
    assert optimize(opt, _exact_judge, np.int64(2)).rounds == 2  # type: ignore[arg-type]


# -- progress ----------------------------------------------------------------------------------
def test_progress_on_a_sphere_with_an_exact_judge(make: Factory) -> None:
    x0 = torch.full((3, 4), 2.0)
    opt = make(x0, seed=0)
    result = optimize(opt, _exact_judge, 20, objective=_sphere)
    f0 = float(_sphere(x0.unsqueeze(0))[0])
    assert result.rounds == 20 and len(result.values) == 20
    assert result.values[-1] < 0.75 * f0
