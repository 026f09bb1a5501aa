"""Prior sampling, the "without us" baseline (labkit.optim.prior)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from labkit.optim.prior import PriorSampling


def _sphere(X: torch.Tensor) -> torch.Tensor:
    """‖x − 0.5‖² per row of an ``n × *shape`` batch."""
    return ((X - 0.5) ** 2).flatten(1).sum(1)


def test_keeps_the_best_candidate_seen_so_far() -> None:
    opt = PriorSampling(torch.full((3, 4), 5.0), sigma=1.0, m=5, seed=0)
    best_seen = math.inf
    previous = math.inf
    for _ in range(30):
        X = opt.ask()
        values = _sphere(X)
        best_seen = min(best_seen, float(values.min()))
        opt.tell(torch.argsort(values)[:2])
        current = float(_sphere(opt.x.unsqueeze(0))[0])
        assert current <= previous  # never gets worse under an exact judge
        assert current == best_seen  # and is the best thing ever shown
        previous = current


def test_rounds_show_the_incumbent_then_fresh_samples() -> None:
    x0 = torch.full((2, 3), 9.0)
    opt = PriorSampling(x0, sigma=0.5, m=4, seed=1)
    assert opt.incumbent_index is None
    first = opt.ask().clone()
    assert first.shape == (4, 2, 3)
    assert not bool((first == 9.0).any())  # x0 itself is not shown: m fresh samples
    opt.tell([2])
    assert torch.equal(opt.x, first[2])
    assert opt.incumbent_index == 0
    second = opt.ask().clone()
    assert torch.equal(second[0], first[2])
    # the other rows are new draws, not repeats of the first round
    assert not any(torch.equal(second[i], first[j]) for i in range(1, 4) for j in range(4))
    opt.tell([0, 3])  # the incumbent wins: x stays, bit for bit
    assert torch.equal(opt.x, first[2])


def test_the_first_as_told_wins_and_none_better_keeps_the_incumbent() -> None:
    opt = PriorSampling(torch.zeros(3), sigma=1.0, m=4, seed=2)
    X = opt.ask().clone()
    opt.tell([2, 1], ties=(1,))  # 2 and 1 equally good: the first as told is taken
    assert torch.equal(opt.x, X[2])
    assert opt.incumbent_index == 0
    opt.ask()
    opt.tell([opt.incumbent_index])  # "none of these is better than the current one"
    assert torch.equal(opt.x, X[2])


def test_fresh_samples_follow_the_prior() -> None:
    """Fresh rows are mean + σ z: their empirical mean and spread match N(mean, σ² I)."""
    d, sigma = 2000, 0.7
    mean = torch.linspace(-3.0, 3.0, d, dtype=torch.float64)
    opt = PriorSampling(torch.zeros(d, dtype=torch.float64), sigma=sigma, m=8, mean=mean, seed=3)
    X = opt.ask()
    z = (X - mean) / sigma  # 16000 numbers that should be standard normal
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.std()) - 1.0) < 5 / math.sqrt(2 * n)


def test_default_prior_mean_is_zero() -> None:
    opt = PriorSampling(torch.full((500,), 10.0, dtype=torch.float64), sigma=2.0, m=4, seed=0)
    X = opt.ask()
    assert abs(float(X.mean())) < 5 * 2.0 / math.sqrt(X.numel())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mean": torch.zeros(4)}, "shape"),
        ({"mean": torch.tensor([0.0, math.nan, 0.0])}, "finite"),
        ({"mean": "zero"}, "mean"),
        ({"m": 1}, "m"),
        ({"m": 3.0}, "m"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PriorSampling(torch.zeros(3), **kwargs)
