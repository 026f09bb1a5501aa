"""Value-based two-point ZO-SGD (labkit.optim.zo_sgd)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from labkit.optim.zo_sgd import ZOSGD

D = 10
A = torch.linspace(0.5, 2.0, D, dtype=torch.float64)  # curvatures
C = torch.linspace(-1.0, 1.0, D, dtype=torch.float64)  # minimizer


def _quadratic(X: torch.Tensor) -> torch.Tensor:
    """f(x) = ½ Σ a_i (x_i − c_i)² per row (or for a single x); minimum 0 at c."""
    return 0.5 * (A * (X - C) ** 2).sum(-1)


def test_converges_on_a_quadratic_with_values() -> None:
    opt = ZOSGD(torch.zeros(D, dtype=torch.float64), lr=0.1, mu=1e-3, m=8, seed=0)
    f0 = float(_quadratic(opt.x))
    for _ in range(200):
        X = opt.ask()
        opt.tell_values(_quadratic(X))
    assert float(_quadratic(opt.x)) < 1e-6 * f0
    assert torch.allclose(opt.x, C, atol=1e-3)


def test_round_layout_and_step_match_the_formula() -> None:
    """Rows are x ± μu_i and the step is −lr·(1/h) Σ (f⁺ − f⁻)/(2μ) u_i, checked by hand."""
    x0 = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(2, 3)
    lr, mu, m = 0.3, 0.05, 6
    opt = ZOSGD(x0, lr=lr, mu=mu, m=m, seed=2)
    X = opt.ask()
    h = m // 2
    u = (X[:h] - x0) / mu
    assert torch.allclose(X[h:], x0 - mu * u, atol=1e-12)  # the mirrored half
    values = (X**2).flatten(1).sum(1) + torch.arange(m, dtype=torch.float64)
    opt.tell_values(values)
    coeff = (values[:h] - values[h:]) / (2 * mu)
    g = sum(coeff[i] * u[i] for i in range(h)) / h
    assert torch.allclose(opt.x, x0 - lr * g, atol=1e-12)


def test_gradient_estimate_is_unbiased_on_a_linear_function() -> None:
    """For f(x) = w·x, E[g] = E[u uᵀ] w = w: the mean estimate over many rounds aligns with w."""
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    lr, rounds = 1e-3, 2000
    opt = ZOSGD(torch.zeros(5, dtype=torch.float64), lr=lr, mu=0.1, m=8, seed=0)
    for _ in range(rounds):
        opt.tell_values(opt.ask() @ w)
    g_mean = -opt.x / (lr * rounds)  # x_T = x_0 − lr Σ_t g_t with x_0 = 0
    cosine = float(g_mean @ w / (g_mean.norm() * w.norm()))
    assert cosine > 0.995
    # Per coordinate, the mean of 2000·4 terms (u·w) u_j has std ≈ sqrt((‖w‖² + w_j²) / 8000).
    se = torch.sqrt((w @ w + w**2) / (rounds * 4))
    assert bool(((g_mean - w).abs() < 5 * se).all())


def test_ranking_is_told_as_rank_pseudo_values() -> None:
    """tell(ranking) is tell_values with position p -> p and the unranked tied at k."""
    a = ZOSGD(torch.zeros(4), lr=0.01, mu=0.1, m=6, seed=5)
    b = ZOSGD(torch.zeros(4), lr=0.01, mu=0.1, m=6, seed=5)
    for ranking in ([3, 0, 5], [1], [0, 1, 2, 3, 4, 5]):
        Xa, Xb = a.ask(), b.ask()
        assert torch.equal(Xa, Xb)
        a.tell(ranking)
        pseudo = [float(len(ranking))] * 6
        for p, i in enumerate(ranking):
            pseudo[i] = float(p)
        b.tell_values(pseudo)
        assert torch.equal(a.x, b.x)
    assert a.rounds == b.rounds == 3


def test_tied_candidates_share_the_pseudo_value_of_the_first_of_their_group() -> None:
    a = ZOSGD(torch.zeros(4), lr=0.01, mu=0.1, m=6, seed=5)
    b = ZOSGD(torch.zeros(4), lr=0.01, mu=0.1, m=6, seed=5)
    a.ask(), b.ask()
    a.tell([3, 0, 5, 1], ties=(1, 2))  # 3 = 0 = 5, then 1; 2 and 4 unranked
    b.tell_values([0.0, 3.0, 4.0, 0.0, 4.0, 0.0])
    assert torch.equal(a.x, b.x)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([0.0] * 5, "shape"),
        ([[0.0] * 6], "shape"),
        ([0.0, 1.0, math.nan, 0.0, 0.0, 0.0], "finite"),
        ([0.0, 1.0, 0.0, 0.0, 0.0, -math.inf], "finite"),
        (torch.ones(6, dtype=torch.bool), "real"),
        ("abcdef", "numbers"),
    ],
)
def test_bad_values_are_refused_and_change_nothing(values: Any, match: str) -> None:
    opt = ZOSGD(torch.zeros(3), lr=0.1, mu=0.1, m=6, seed=0)
    X = opt.ask().clone()
    state = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.tell_values(values)
    assert opt.pending and opt.rounds == 0
    assert torch.equal(opt.ask(), X)
    assert torch.equal(opt.state_dict()["x"], state["x"])
    opt.tell_values(torch.arange(6.0))  # the round can still be answered
    assert opt.rounds == 1


def test_values_before_ask_are_refused() -> None:
    opt = ZOSGD(torch.zeros(3), lr=0.1, mu=0.1, m=6)
    with pytest.raises(ValueError, match="ask"):
        opt.tell_values(torch.zeros(6))


@pytest.mark.parametrize("m", [0, 1, 3, 7, 4.0, True])
def test_m_must_be_even(m: Any) -> None:
    with pytest.raises(ValueError, match="even"):
        ZOSGD(torch.zeros(3), lr=0.1, mu=0.1, m=m)


@pytest.mark.parametrize(("name", "value"), [("lr", 0.0), ("lr", -1.0), ("mu", 0.0)])
def test_step_sizes_must_be_positive(name: str, value: float) -> None:
    kwargs: dict[str, Any] = {"lr": 0.1, "mu": 0.1, name: value}
    with pytest.raises(ValueError, match=name):
        ZOSGD(torch.zeros(3), **kwargs)
