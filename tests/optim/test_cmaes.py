"""CMA-ES through pycma, told rankings only (labkit.optim.cmaes)."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import cma
import numpy as np
import pytest
import torch

from labkit.optim.base import optimize
from labkit.optim.cmaes import CMAES, DIAGONAL_ABOVE, _NumpyRandn


def _sphere(X: torch.Tensor) -> torch.Tensor:
    """‖x‖² per row of an ``n × d`` batch."""
    return (X**2).sum(-1)


def _judge(values: Callable[[torch.Tensor], torch.Tensor], k: int | None = None):
    """An exact top-k judge: rows sorted by ``values`` (lowest first), ties by row index."""

    def judge(X: torch.Tensor) -> list[int]:
        return torch.argsort(values(X), stable=True)[:k].tolist()

    return judge


@pytest.mark.parametrize(("k", "tol"), [(None, 1e-5), (3, 1e-4)])
def test_converges_on_a_sphere_from_rankings_only(k: int | None, tol: float) -> None:
    x0 = torch.full((10,), 3.0, dtype=torch.float64)  # f(x0) = 90
    opt = CMAES(x0, sigma=1.0, seed=0)
    assert opt.m == 4 + int(3 * math.log(10))  # pycma's default population size
    result = optimize(opt, _judge(_sphere, k), 150, objective=_sphere)
    assert result.values[-1] < tol
    assert opt.sigma < 0.1  # the step size shrank with the distance to the optimum


def test_full_ranking_equals_pycma_told_the_values() -> None:
    """Pseudo-values from a full ranking drive pycma exactly like the true values do.

    And since pycma only uses the order, a monotone transform of the values changes nothing:
    all three runs agree bit for bit.
    """
    d, m, seed, rounds = 6, 8, 3, 25
    x0 = np.linspace(-2.0, 2.0, d)

    def f(x: np.ndarray) -> float:
        return float(np.sum((x - 0.3) ** 2))

    means = []
    for transform in (lambda v: v, lambda v: math.log1p(v) ** 3):
        opts = {"randn": _NumpyRandn(seed), "popsize": m, "verbose": -9, "verb_log": 0}
        opts |= {"verb_disp": 0, "CMA_diagonal": False}
        es = cma.CMAEvolutionStrategy(x0.copy(), 0.7, opts)
        for _ in range(rounds):
            solutions = es.ask()
            es.tell(solutions, [transform(f(s)) for s in solutions])
        means.append(es.mean.copy())

    opt = CMAES(torch.from_numpy(x0), sigma=0.7, m=m, seed=seed)
    f_rows = _judge(lambda X: ((X - 0.3) ** 2).sum(-1))
    optimize(opt, f_rows, rounds)
    assert np.array_equal(means[0], means[1])
    assert np.array_equal(opt.x.numpy(), means[0])
    assert not np.array_equal(means[0], x0)


def test_told_ranking_is_invariant_under_a_monotone_transform() -> None:
    """Judging by f or by exp(f) − 7 (same order) gives the very same run."""
    x0 = torch.linspace(-1.0, 1.0, 5)
    a = CMAES(x0, sigma=0.5, m=6, seed=1)
    b = CMAES(x0, sigma=0.5, m=6, seed=1)
    optimize(a, _judge(_sphere, 4), 20)
    optimize(b, _judge(lambda X: torch.exp(_sphere(X)) - 7.0, 4), 20)
    assert torch.equal(a.x, b.x)


def test_randomness_is_private_and_seeded() -> None:
    """The global NumPy state neither influences the run nor is consumed by it."""
    x0 = torch.zeros(4)
    runs = []
    saved = np.random.get_state()
    try:
        for global_seed in (1, 2):
            np.random.seed(global_seed)
            before = pickle.dumps(np.random.get_state())
            opt = CMAES(x0, sigma=1.0, m=6, seed=9)
            optimize(opt, _judge(lambda X: ((X - 1.0) ** 2).sum(-1)), 5)
            assert pickle.dumps(np.random.get_state()) == before
            runs.append(opt.x)
    finally:
        np.random.set_state(saved)
    assert torch.equal(runs[0], runs[1])
    other = CMAES(x0, sigma=1.0, m=6, seed=10)
    assert not torch.equal(other.ask(), CMAES(x0, sigma=1.0, m=6, seed=9).ask())


def test_ranked_pseudo_values_reach_pycma(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranked row p gets value p, unranked rows tie at k, told with the asked solutions."""
    opt = CMAES(torch.zeros(3), sigma=1.0, m=6, seed=0)
    told: list[tuple[list[np.ndarray], list[float]]] = []
    original_tell = cma.CMAEvolutionStrategy.tell

    def spy(es: cma.CMAEvolutionStrategy, solutions: list[np.ndarray], values: list[float]):
        told.append((solutions, values))
        return original_tell(es, solutions, values)

    monkeypatch.setattr(cma.CMAEvolutionStrategy, "tell", spy)
    X = opt.ask()
    opt.tell([4, 1])
    ((solutions, values),) = told
    assert values == [2.0, 1.0, 2.0, 2.0, 0.0, 2.0]
    assert torch.equal(torch.from_numpy(np.stack(solutions)).float(), X)


def test_ties_are_told_in_the_order_given() -> None:
    """pycma has no ties: a tied ranking drives it exactly as the same ranking untied."""
    a = CMAES(torch.zeros(3), sigma=1.0, m=6, seed=0)
    b = CMAES(torch.zeros(3), sigma=1.0, m=6, seed=0)
    for _ in range(3):
        a.ask(), b.ask()
        a.tell([4, 1, 0], ties=(1, 2))
        b.tell([4, 1, 0])
    assert torch.equal(a.x, b.x) and a.sigma == b.sigma


def test_diagonal_covariance_above_a_hundred_dimensions() -> None:
    small = CMAES(torch.zeros(DIAGONAL_ABOVE), sigma=1.0, m=8)
    large = CMAES(torch.zeros(DIAGONAL_ABOVE + 1), sigma=1.0, m=8)
    assert small.es.opts["CMA_diagonal"] is False
    assert large.es.opts["CMA_diagonal"] is True
    forced = CMAES(torch.zeros(3), sigma=1.0, m=8, options={"CMA_diagonal": True})
    assert forced.es.opts["CMA_diagonal"] is True
    # A diffusion-latent-sized problem stays cheap: one round of 4×64×64 latents.
    latents = CMAES(torch.zeros(4, 64, 64), sigma=1.0, m=4)
    X = latents.ask()
    latents.tell([2, 0])
    assert X.shape == (4, 4, 64, 64) and latents.x.shape == (4, 64, 64)


@pytest.mark.parametrize("key", ["randn", "seed", "popsize"])
def test_options_set_by_arguments_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        CMAES(torch.zeros(3), sigma=1.0, options={key: 4})


@pytest.mark.parametrize("m", [0, 1, 2.0, True])
def test_bad_population_size_is_refused(m: object) -> None:
    with pytest.raises(ValueError, match="m"):
        CMAES(torch.zeros(3), sigma=1.0, m=m)  # type: ignore[arg-type]


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.inf, math.nan])
def test_bad_sigma_is_refused(sigma: float) -> None:
    with pytest.raises(ValueError, match="sigma"):
        CMAES(torch.zeros(3), sigma=sigma)


def test_state_of_another_shape_is_refused() -> None:
    state = CMAES(torch.zeros(3), sigma=1.0, m=6).state_dict()
    with pytest.raises(ValueError, match="shape"):
        CMAES(torch.zeros(4), sigma=1.0, m=6).load_state_dict(state)
