"""ZO-RankSGD: the estimator, convergence, invariances, memory modes and line-search rounds."""

from __future__ import annotations

import pytest
import torch

import labkit.optim.zo_ranksgd as zr
from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.ranking import edge_count, graph_edges


def _rank(values: torch.Tensor, k: int | None = None) -> list[int]:
    """Exact ranking oracle: indices of the k smallest values, best first."""
    order = torch.argsort(values, stable=True).tolist()
    return order if k is None else order[:k]


def _quadratic(X: torch.Tensor) -> torch.Tensor:
    return (X.reshape(X.shape[0], -1) ** 2).sum(dim=1)


def _run(opt: ZORankSGD, f, rounds: int, k: int | None = None) -> list[torch.Tensor]:
    path = []
    for _ in range(rounds):
        X = opt.ask()
        opt.tell(_rank(f(X), k))
        path.append(opt.x.clone())
    return path


# -- the estimator ----------------------------------------------------------------------------
def test_coefficients_match_the_ranking_graph_edge_by_edge() -> None:
    """c_i = (#losses − #wins)/|E| equals the explicit sum over the DAG's edges."""
    m, d = 7, 5
    for ranking in ([3], [2, 0, 6], [1, 2, 3, 4, 5, 6, 0], [6, 5]):
        opt = ZORankSGD(torch.zeros(d), lr=1.0, mu=1.0, m=m, seed=3, regenerate=False)
        X = opt.ask()
        xi = X.clone()  # x = 0 and μ = 1: rows are ξ_i
        ranked = list(ranking)
        unranked = [j for j in range(m) if j not in ranked]
        edges = [
            (ranked[a], ranked[b]) for a in range(len(ranked)) for b in range(a + 1, len(ranked))
        ]
        edges += [(i, j) for i in ranked for j in unranked]
        assert len(edges) == edge_count(m, len(ranked))
        g = sum(xi[j] - xi[i] for i, j in edges) / len(edges)
        opt.tell(ranking)
        torch.testing.assert_close(-opt.x, g, rtol=1e-5, atol=1e-6)  # x ← 0 − 1·g


def test_a_tie_changes_the_step_as_the_ranking_graph_says() -> None:
    """With ties, the step is still −η (1/|E|) Σ_{(i,j)∈E} (ξ_j − ξ_i) over the graph's edges."""
    m, d = 6, 4
    for ranking, ties in (([2, 0, 5], (1,)), ([1, 2, 3, 4, 5, 0], (1, 2, 4)), ([3, 4], (1,))):
        opt = ZORankSGD(torch.zeros(d), lr=1.0, mu=1.0, m=m, seed=5)
        xi = opt.ask().clone()
        edges = graph_edges(m, ranking, ties)
        g = sum(xi[j] - xi[i] for i, j in edges) / len(edges)
        opt.tell(ranking, ties=ties)
        torch.testing.assert_close(-opt.x, g, rtol=1e-5, atol=1e-6)
        untied = ZORankSGD(torch.zeros(d), lr=1.0, mu=1.0, m=m, seed=5)
        untied.ask()
        untied.tell(ranking)
        assert not torch.allclose(untied.x, opt.x)  # the tie made a difference


def test_no_ties_is_the_same_run_as_no_ties_given() -> None:
    x0 = torch.linspace(-1, 1, 9)
    runs = []
    for ties in ("absent", None, (), [], torch.tensor([], dtype=torch.long)):
        opt = ZORankSGD(x0, lr=0.05, mu=0.05, m=6, seed=2, line_search=2)
        for _ in range(6):
            r = _rank(_quadratic(opt.ask()), 3)
            if ties == "absent":
                opt.tell(r)
            else:
                opt.tell(r, ties=ties)
        runs.append(opt.x.clone())
    for x in runs[1:]:
        assert torch.equal(x, runs[0])


@pytest.mark.parametrize("line_search", [0, 2])
def test_everything_tied_takes_no_step(line_search: int) -> None:
    x0 = torch.tensor([1.0, -2.0, 0.5])
    opt = ZORankSGD(x0, lr=0.4, mu=0.1, m=3, seed=1, line_search=line_search)
    X = opt.ask().clone()
    opt.tell([2, 0, 1], ties=(1, 2))  # "all three equally good": the graph has no edge
    assert torch.equal(opt.x, x0) and opt.last_step == 0.0 and opt.rounds == 1
    # No direction to search along: the next round is a new gradient round, ĝ untouched.
    assert opt.round_kind == "gradient" and opt._acc is None
    assert not torch.equal(opt.ask(), X)


@pytest.mark.parametrize("k", [None, 1, 3])
def test_mean_estimate_points_along_the_gradient_of_a_linear_function(k: int | None) -> None:
    d, m = 20, 8
    a = torch.linspace(-1.0, 2.0, d)  # f(x) = aᵀx, ∇f = a
    opt = ZORankSGD(torch.zeros(d), lr=1.0, mu=0.1, m=m, seed=11)
    total = torch.zeros(d)
    for _ in range(3000):
        before = opt.x.clone()
        X = opt.ask()
        opt.tell(_rank(X @ a, k))
        total += before - opt.x  # = lr · g
    cos = torch.nn.functional.cosine_similarity(total, a, dim=0)
    assert cos >= 0.95, float(cos)


@pytest.mark.parametrize("k", [None, 2])
def test_converges_on_a_quadratic_in_d100(k: int | None) -> None:
    d = 100
    x0 = torch.ones(d)
    opt = ZORankSGD(x0, lr=0.05, mu=0.01, m=10, seed=0)
    start = float(_quadratic(x0[None])[0])
    _run(opt, _quadratic, 1500, k)
    end = float(_quadratic(opt.x[None])[0])
    assert end < 0.05 * start, (start, end)


def test_rank_invariance_under_a_strictly_increasing_transform() -> None:
    x0 = torch.full((30,), 0.7)
    a = ZORankSGD(x0, lr=0.05, mu=0.02, m=6, seed=5)
    b = ZORankSGD(x0, lr=0.05, mu=0.02, m=6, seed=5)
    path_a = _run(a, _quadratic, 60, k=3)
    path_b = _run(b, lambda X: torch.exp(3 * _quadratic(X)) - 7.0, 60, k=3)
    for pa, pb in zip(path_a, path_b, strict=True):
        assert torch.equal(pa, pb)


def test_replaying_rankings_into_a_fresh_optimizer_is_bit_identical() -> None:
    x0 = torch.randn(50, generator=torch.Generator().manual_seed(1))
    opt = ZORankSGD(x0, lr=0.03, mu=0.05, m=8, seed=123)
    log = []
    for _ in range(40):
        X = opt.ask()
        r = _rank(_quadratic(X), 4)
        log.append(r)
        opt.tell(r)
    fresh = ZORankSGD(x0, lr=0.03, mu=0.05, m=8, seed=123)
    for r in log:
        fresh.ask()
        fresh.tell(r)
    assert torch.equal(fresh.x, opt.x)


@pytest.mark.parametrize("line_search", [0, 3])
def test_state_dict_round_trip_mid_run_continues_identically(line_search: int) -> None:
    x0 = torch.linspace(-1, 1, 24).reshape(4, 6)
    ref = ZORankSGD(x0, lr=0.05, mu=0.05, m=5, seed=9, line_search=line_search)
    _run(ref, _quadratic, 7)
    ref.ask()  # a pending round travels in the state dict too
    sd = ref.state_dict()
    other = ZORankSGD(x0, lr=0.05, mu=0.05, m=5, seed=0, line_search=line_search)
    other.load_state_dict(sd)
    assert torch.equal(other.ask(), ref.ask())
    path_ref = _run(ref, _quadratic, 10)
    path_other = _run(other, _quadratic, 10)
    for pa, pb in zip(path_ref, path_other, strict=True):
        assert torch.equal(pa, pb)


def test_load_state_dict_refuses_another_config() -> None:
    a = ZORankSGD(torch.zeros(3), lr=0.1, mu=0.1, m=4, seed=0)
    b = ZORankSGD(torch.zeros(3), lr=0.2, mu=0.1, m=4, seed=0)
    with pytest.raises(ValueError, match="config"):
        b.load_state_dict(a.state_dict())


# -- memory modes -----------------------------------------------------------------------------
@pytest.mark.parametrize("tile", [1 << 22, 48, 7])
def test_stored_and_regenerated_directions_give_bit_identical_runs(
    monkeypatch: pytest.MonkeyPatch, tile: int
) -> None:
    """Whole-row tiles (d ≤ tile) and split rows (d > tile) alike."""
    monkeypatch.setattr(zr, "_TILE", tile)
    x0 = torch.linspace(-2, 2, 33)
    stored = ZORankSGD(x0, lr=0.05, mu=0.1, m=6, seed=4, regenerate=False, line_search=2)
    regen = ZORankSGD(x0, lr=0.05, mu=0.1, m=6, seed=4, regenerate=True, line_search=2)
    for _ in range(12):
        Xs, Xr = stored.ask(), regen.ask()
        assert torch.equal(Xs, Xr)
        r = _rank(_quadratic(Xs), 3)
        stored.tell(r)
        regen.tell(r)
        assert torch.equal(stored.x, regen.x)


def test_regeneration_is_chosen_by_size() -> None:
    assert not ZORankSGD(torch.zeros(1000), lr=1, mu=1, m=8).regenerate
    assert ZORankSGD(torch.zeros(1 << 22), lr=1, mu=1, m=8).regenerate
    assert ZORankSGD(torch.zeros(1 << 22), lr=1, mu=1, m=8, regenerate=False).regenerate is False


def test_directions_are_standard_normal() -> None:
    opt = ZORankSGD(torch.zeros(20000), lr=1, mu=1, m=8, seed=2)
    xi = opt.ask()
    assert abs(float(xi.mean())) < 0.01
    assert abs(float(xi.std()) - 1.0) < 0.01
    # different rows and different rounds are different draws
    assert not torch.equal(xi[0], xi[1])
    opt.tell([0])
    assert abs(float(torch.corrcoef(torch.stack([opt.ask()[0] - opt.x, xi[1]]))[0, 1])) < 0.05


# -- line-search rounds -----------------------------------------------------------------------
def test_line_search_rounds_show_incumbent_previous_winner_and_steps() -> None:
    x0 = torch.tensor([1.0, -2.0, 0.5])
    opt = ZORankSGD(x0, lr=0.4, mu=0.1, m=4, seed=1, line_search=3)
    assert opt.round_kind == "gradient" and opt.incumbent_index is None
    X = opt.ask()
    opt.tell([2, 0])  # candidate 2 wins the gradient round
    assert torch.equal(opt.x, x0)  # a gradient round does not move x with line search on
    g = (opt._acc).clone()
    assert opt.round_kind == "line_search" and opt.incumbent_index == 0
    L = opt.ask()
    assert L.shape == (5, 3)
    assert opt.candidate_roles[:2] == ["incumbent", "previous winner"]
    assert torch.equal(L[0], x0)
    torch.testing.assert_close(L[1], X[2])
    for i in range(3):
        torch.testing.assert_close(L[2 + i], x0 - 0.4 * 2.0**-i * g)
    opt.tell([3, 0])  # step η/2 wins
    torch.testing.assert_close(opt.x, x0 - 0.2 * g)
    assert opt.last_step == pytest.approx(0.2)
    assert opt.round_kind == "gradient"


def test_line_search_incumbent_win_keeps_x_and_averages_directions() -> None:
    x0 = torch.zeros(4)
    opt = ZORankSGD(x0, lr=0.4, mu=0.1, m=4, seed=1, line_search=2)
    opt.ask()
    opt.tell([1])
    g1 = opt._acc.clone()
    opt.ask()
    opt.tell([0])  # incumbent wins
    assert torch.equal(opt.x, x0)
    X = opt.ask()
    opt.tell([3])
    # The same two gradient rounds without line search (η = 1 from 0): x = −g1 − g2.
    plain = ZORankSGD(x0, lr=1.0, mu=0.1, m=4, seed=1)
    plain.ask()
    plain.tell([1])
    plain.ask()
    plain.tell([3])  # same seed: the same directions as opt's two gradient rounds
    g2 = -(plain.x + g1)
    torch.testing.assert_close(opt._acc, (g1 + g2) / 2, rtol=1e-5, atol=1e-6)
    L = opt.ask()
    torch.testing.assert_close(L[1], X[3])  # the newest gradient round's winner
    opt.tell([1])  # the previous winner is taken as the iterate
    torch.testing.assert_close(opt.x, X[3])


def test_line_search_converges_on_a_quadratic() -> None:
    x0 = torch.ones(20)
    opt = ZORankSGD(x0, lr=1.0, mu=0.05, m=8, seed=0, line_search=4)
    _run(opt, _quadratic, 200)
    assert float(_quadratic(opt.x[None])[0]) < 0.05 * float(_quadratic(x0[None])[0])


# -- arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"mu": -1.0}, "mu"),
        ({"m": 1}, "m "),
        ({"m": 4.0}, "m "),
        ({"k": 9}, "k must"),
        ({"k": 0}, "k must"),
        ({"line_search": -1}, "line_search"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict, match: str) -> None:
    args = {"lr": 0.1, "mu": 0.1, "m": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        ZORankSGD(torch.zeros(3), **args)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_x0_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        ZORankSGD(torch.tensor([0.0, bad]), lr=0.1, mu=0.1)


def test_keeps_dtype_and_shape_of_x0() -> None:
    x0 = torch.zeros(2, 3, dtype=torch.float64)
    opt = ZORankSGD(x0, lr=0.1, mu=0.1, m=4, seed=0)
    X = opt.ask()
    assert X.shape == (4, 2, 3) and X.dtype == torch.float64
    opt.tell([0, 1, 2, 3])
    assert opt.x.shape == (2, 3) and opt.x.dtype == torch.float64
    assert ZORankSGD([1, 2], lr=0.1, mu=0.1).x.dtype == torch.float32
