"""Tests of labkit.judges: exact, noisy and score-model judges."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from labkit.judges import NoisyJudge, ScoreJudge, TopKJudge, ranking_from_values
from labkit.ranking import validate_ranking
from labkit.tasks.functions import FunctionTask, sphere


def _first_column(X: torch.Tensor) -> torch.Tensor:
    """A value function that reads each candidate's value off its first coordinate."""
    return X[:, 0]


def _points(values: list[float]) -> torch.Tensor:
    """Candidates whose first coordinate is the given value (an m × 2 tensor)."""
    v = torch.tensor(values, dtype=torch.float64)
    return torch.stack([v, torch.zeros_like(v)], dim=1)


def _random_rounds(n: int, m: int = 8, d: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(m, d, generator=g) for _ in range(n)]


# -- ranking_from_values --------------------------------------------------------------------------
def test_ranking_from_values_known_orders() -> None:
    assert ranking_from_values([3.0, 1.0, 2.0]) == (1, 2, 0)
    assert ranking_from_values([3.0, 1.0, 2.0], maximize=True) == (0, 2, 1)
    assert ranking_from_values(torch.tensor([3.0, 1.0, 2.0]), k=1) == (1,)
    assert ranking_from_values(np.array([5, -1, 7, 0]), k=2, maximize=True) == (2, 0)
    # Infinities are values like any other.
    assert ranking_from_values([math.inf, 0.0, -math.inf]) == (2, 1, 0)


def test_ties_go_to_the_lower_index_in_both_directions() -> None:
    assert ranking_from_values([1, 0, 1, 0, 2]) == (1, 3, 0, 2, 4)
    assert ranking_from_values([1, 0, 1, 0, 2], maximize=True) == (4, 0, 2, 1, 3)
    # Long inputs too (sorting algorithms change with size): compare with Python's stable sort.
    g = torch.Generator().manual_seed(0)
    v = torch.randint(0, 5, (500,), generator=g).to(torch.float32)
    vals = v.tolist()
    assert ranking_from_values(v) == tuple(sorted(range(500), key=lambda i: vals[i]))
    assert ranking_from_values(v, maximize=True) == tuple(
        sorted(range(500), key=lambda i: -vals[i])
    )


def test_ranking_from_values_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"values\[1\] is NaN"):
        ranking_from_values([0.0, math.nan])
    with pytest.raises(ValueError, match="one-dimensional"):
        ranking_from_values(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="real numbers"):
        ranking_from_values([True, False])
    with pytest.raises(ValueError, match="empty"):
        ranking_from_values([])
    with pytest.raises(ValueError, match="array of numbers"):
        ranking_from_values(["a", "b"])
    with pytest.raises(ValueError, match="top k=4 of a round of only m=3"):
        ranking_from_values([1.0, 2.0, 3.0], k=4)
    for bad_k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be None"):
            ranking_from_values([1.0, 2.0], k=bad_k)  # type: ignore[arg-type]


# -- TopKJudge ------------------------------------------------------------------------------------
def test_topk_judge_ranks_by_value() -> None:
    X = _points([0.5, -2.0, 3.0, 0.0])
    assert TopKJudge(_first_column)(X) == (1, 3, 0, 2)
    assert TopKJudge(_first_column, k=2)(X) == (1, 3)
    assert TopKJudge(_first_column, k=2, maximize=True)(X) == (2, 0)
    # Any value function: a task's score, a function returning a list or a NumPy array.
    task = FunctionTask("sphere")
    assert TopKJudge(task.score, maximize=task.maximize)(X) == (3, 0, 1, 2)
    assert TopKJudge(lambda X: X[:, 0].tolist())(X) == (1, 3, 0, 2)
    assert TopKJudge(lambda X: X[:, 0].numpy())(X) == (1, 3, 0, 2)


def test_topk_judge_refuses_bad_input() -> None:
    X = _points([0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"one value per candidate \(m=4\); got 3"):
        TopKJudge(lambda X: X[:3, 0])(X)
    with pytest.raises(ValueError, match="one-dimensional"):
        TopKJudge(lambda X: X)(X)
    with pytest.raises(ValueError, match=r"fn\(X\)\[2\] is NaN"):
        TopKJudge(lambda X: torch.tensor([0.0, 1.0, math.nan, 2.0]))(X)
    with pytest.raises(ValueError, match="top k=5 of a round of only m=4"):
        TopKJudge(_first_column, k=5)(X)
    with pytest.raises(ValueError, match="0-d tensor"):
        TopKJudge(_first_column)(torch.tensor(1.0))
    with pytest.raises(ValueError, match="callable"):
        TopKJudge("sphere")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be None"):
        TopKJudge(_first_column, k=0)


# -- NoisyJudge: parameters -----------------------------------------------------------------------
def test_noisy_judge_validates_its_parameters_loudly() -> None:
    f = _first_column
    with pytest.raises(ValueError, match=r"unknown noise model 'bradley-terry'.*thurstone"):
        NoisyJudge(f, model="bradley-terry")  # type: ignore[arg-type]
    for bad in (-0.1, math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match="temperature"):
            NoisyJudge(f, temperature=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="sigma"):
            NoisyJudge(f, model="thurstone", sigma=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sigma=0\.5 is Thurstone's"):
        NoisyJudge(f, sigma=0.5)
    with pytest.raises(ValueError, match=r"temperature=0\.5 is Plackett–Luce's"):
        NoisyJudge(f, model="thurstone", temperature=0.5)
    for bad_p in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="swap_prob"):
            NoisyJudge(f, swap_prob=bad_p)
    for bad_seed in (-1, 1.5, None, True):
        with pytest.raises(ValueError, match="seed"):
            NoisyJudge(f, seed=bad_seed)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be None"):
        NoisyJudge(f, k=-2)
    with pytest.raises(ValueError, match="callable"):
        NoisyJudge(None)  # type: ignore[arg-type]
    j = NoisyJudge(f, model="thurstone")
    assert j.scale == 1.0 and "sigma=1.0" in repr(j)
    assert NoisyJudge(f).scale == 1.0


# -- NoisyJudge: the zero-noise limit -------------------------------------------------------------
@pytest.mark.parametrize("maximize", [False, True])
def test_vanishing_noise_agrees_with_topk(maximize: bool) -> None:
    exact = TopKJudge(sphere, maximize=maximize)
    judges = [
        NoisyJudge(sphere, maximize=maximize, temperature=1e-9, seed=1),
        NoisyJudge(sphere, maximize=maximize, model="thurstone", sigma=1e-9, seed=2),
    ]
    for X in _random_rounds(50):
        want = exact(X)
        for judge in judges:
            assert judge(X) == want
    # At exactly zero noise the noisy judges *are* the exact one, ties included.
    X = _points([1.0, 0.0, 1.0, 0.0, 2.0])
    for model, kw in (("plackett-luce", "temperature"), ("thurstone", "sigma")):
        judge = NoisyJudge(_first_column, model=model, k=4, **{kw: 0.0})  # type: ignore[arg-type]
        assert judge(X) == TopKJudge(_first_column, k=4)(X) == (1, 3, 0, 2)


def test_moderate_noise_usually_but_not_always_agrees() -> None:
    # Values 0..4 at T = 1: Plackett–Luce gives the true order with probability
    # Π_j (1 − e⁻¹) / (1 − e^{−(5−j)}) ≈ 0.199, against 1/120 by chance.
    X = _points([2.0, 0.0, 4.0, 1.0, 3.0])
    truth = (1, 3, 0, 4, 2)
    judge = NoisyJudge(_first_column, temperature=1.0, seed=0)
    n = 2000
    hits = sum(judge(X) == truth for _ in range(n))
    p = math.prod((1 - math.exp(-1)) / (1 - math.exp(-(5 - j))) for j in range(5))
    assert 1 / 120 < p < 1  # the premise of the test
    assert abs(hits / n - p) < 0.05  # sd ≈ 0.009
    assert n / 120 * 3 < hits < n


@pytest.mark.parametrize("maximize", [False, True])
def test_plackett_luce_top_choice_probability(maximize: bool) -> None:
    # P(best first) = e^{−0} / Σ_l e^{−l/T}; at T = 2 for values 0..3: 1 / Σ e^{−l/2} ≈ 0.4752.
    values = [0.0, 1.0, 2.0, 3.0] if not maximize else [3.0, 2.0, 1.0, 0.0]
    judge = NoisyJudge(_first_column, maximize=maximize, temperature=2.0, k=1, seed=3)
    X = _points(values)
    n = 3000
    wins = sum(judge(X) == (0,) for _ in range(n))
    p = 1 / sum(math.exp(-j / 2) for j in range(4))
    assert abs(wins / n - p) < 0.05  # sd ≈ 0.009


def test_thurstone_pairwise_probability() -> None:
    # Of two values a gap Δ = 1 apart with σ = 1: P(better first) = Φ(Δ / (σ√2)) ≈ 0.760.
    judge = NoisyJudge(_first_column, model="thurstone", sigma=1.0, seed=4)
    X = _points([0.0, 1.0])
    n = 3000
    wins = sum(judge(X) == (0, 1) for _ in range(n))
    p = 0.5 * (1 + math.erf(0.5))
    assert abs(wins / n - p) < 0.04  # sd ≈ 0.008


# -- NoisyJudge: adjacent swaps -------------------------------------------------------------------
def test_a_sure_swap_exchanges_exactly_one_adjacent_pair() -> None:
    X = _points([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    judge = NoisyJudge(_first_column, temperature=0.0, swap_prob=1.0, seed=0)
    seen: set[int] = set()
    for _ in range(300):
        r = judge(X)
        diff = [i for i in range(6) if r[i] != i]
        assert len(diff) == 2 and diff[1] == diff[0] + 1
        seen.add(diff[0])
    assert seen == {0, 1, 2, 3, 4}  # every adjacent pair can slip
    # With k = 2 the pair is within the ranked part or across the cut: (1, 0) or (0, 2).
    top2 = NoisyJudge(_first_column, temperature=0.0, swap_prob=1.0, k=2, seed=0)
    assert {top2(X) for _ in range(100)} == {(1, 0), (0, 2)}
    top1 = NoisyJudge(_first_column, temperature=0.0, swap_prob=1.0, k=1, seed=0)
    assert {top1(X) for _ in range(20)} == {(1,)}
    alone = NoisyJudge(_first_column, temperature=0.0, swap_prob=1.0, seed=0)
    assert alone(_points([7.0])) == (0,)  # nothing to swap with


def test_swap_frequency() -> None:
    X = _points([0.0, 1.0, 2.0, 3.0])
    judge = NoisyJudge(_first_column, model="thurstone", sigma=0.0, swap_prob=0.3, seed=5)
    n = 2000
    swapped = sum(judge(X) != (0, 1, 2, 3) for _ in range(n))
    assert abs(swapped / n - 0.3) < 0.04  # sd ≈ 0.010


# -- NoisyJudge: reproducibility ------------------------------------------------------------------
@pytest.mark.parametrize("model", ["plackett-luce", "thurstone"])
def test_noisy_judge_is_reproducible_from_its_seed(model: str) -> None:
    rounds = _random_rounds(30, seed=7)

    def run(seed: int | torch.Generator) -> list[tuple[int, ...]]:
        judge = NoisyJudge(sphere, model=model, swap_prob=0.2, seed=seed)  # type: ignore[arg-type]
        return [judge(X) for X in rounds]

    assert run(11) == run(11)
    assert run(11) != run(12)
    assert run(torch.Generator().manual_seed(11)) == run(11)
    # A generator handed in is shared: its state advances with the judge's draws.
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    NoisyJudge(sphere, model=model, seed=g)(rounds[0])  # type: ignore[arg-type]
    assert not torch.equal(g.get_state(), before)


# -- ScoreJudge -----------------------------------------------------------------------------------
def test_score_judge_ranks_by_the_model_on_rendered_candidates() -> None:
    X = _points([0.0, 1.0, 2.0, 3.0])
    rendered: list[Any] = []

    def render(X: torch.Tensor) -> list[str]:
        rendered.append(X)
        return [f"cand{i}" for i in range(X.shape[0])]

    def model(items: list[str]) -> np.ndarray:  # a "classifier" that likes higher numbers
        return np.array([float(s[4:]) for s in items])

    judge = ScoreJudge(model, render=render, k=2)
    assert judge(X) == (3, 2) and rendered and rendered[0] is X
    assert ScoreJudge(model, render=render, maximize=False)(X) == (0, 1, 2, 3)
    assert ScoreJudge(lambda X: X[:, 0].tolist())(X) == (3, 2, 1, 0)  # no render: X itself
    assert torch.equal(judge.scores(X), torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64))


def test_score_judge_on_images_of_a_function_task() -> None:
    # A real pipeline: FunctionTask renders PNGs; the "model" reads the red marker's position in
    # each image and scores closeness to the image centre, which is the sphere's optimum. Its
    # ranking must be the sphere's own.
    task = FunctionTask("sphere", image_size=64)

    def closeness(pngs: list[bytes]) -> list[float]:
        out = []
        for png in pngs:
            with Image.open(io.BytesIO(png)) as im:
                a = np.asarray(im.convert("RGB")).astype(int)
            rows, cols = np.nonzero((a == [228, 26, 28]).all(axis=2))
            out.append(-float(np.hypot(rows.mean() - 32, cols.mean() - 32)))
        return out

    X = torch.tensor([[3.0, -2.0], [0.5, 0.0], [-1.5, 1.5], [0.0, -4.0], [1.0, 1.0]])
    judge = ScoreJudge(closeness, render=task.render)
    assert judge(X) == TopKJudge(task.score)(X) == (1, 4, 2, 0, 3)


def test_score_judge_noise_and_generator_use() -> None:
    X = _points([0.0, 1.0, 2.0, 3.0])
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    exact = ScoreJudge(_first_column, seed=g)
    for _ in range(5):
        assert exact(X) == (3, 2, 1, 0)
    assert torch.equal(g.get_state(), before)  # the exact judge draws nothing
    noisy = [ScoreJudge(_first_column, noise=2.0, seed=9) for _ in range(2)]
    runs = [[j(X) for _ in range(50)] for j in noisy]
    assert runs[0] == runs[1] and len(set(runs[0])) > 1
    with pytest.raises(ValueError, match="noise"):
        ScoreJudge(_first_column, noise=-1.0)
    with pytest.raises(ValueError, match="swap_prob"):
        ScoreJudge(_first_column, swap_prob=2.0)
    with pytest.raises(ValueError, match="render must be None or callable"):
        ScoreJudge(_first_column, render=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"score_model\(render\(X\)\).*m=4"):
        ScoreJudge(lambda X: [1.0])(X)


# -- every judge answers with a valid ranking -----------------------------------------------------
_JUDGES: dict[str, Callable[..., Any]] = {
    "topk": lambda k, maximize, p, seed: TopKJudge(_first_column, k=k, maximize=maximize),
    "pl": lambda k, maximize, p, seed: NoisyJudge(
        _first_column, k=k, maximize=maximize, temperature=0.7, swap_prob=p, seed=seed
    ),
    "thurstone": lambda k, maximize, p, seed: NoisyJudge(
        _first_column, k=k, maximize=maximize, model="thurstone", sigma=0.7, swap_prob=p, seed=seed
    ),
    "score": lambda k, maximize, p, seed: ScoreJudge(
        lambda X: X[:, 0].numpy(), k=k, maximize=maximize, noise=0.3, swap_prob=p, seed=seed
    ),
}


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(sorted(_JUDGES)),
    values=st.lists(st.floats(allow_nan=False, width=64), min_size=1, max_size=12),
    data=st.data(),
    maximize=st.booleans(),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_judge_returns_a_valid_ranking(
    kind: str,
    values: list[float],
    data: st.DataObject,
    maximize: bool,
    p: float,
    seed: int,
) -> None:
    m = len(values)
    k = data.draw(st.one_of(st.none(), st.integers(1, m)))
    r = _JUDGES[kind](k, maximize, p, seed)(_points(values))
    assert isinstance(r, tuple) and validate_ranking(r, m) == r
    assert len(r) == (m if k is None else k)
    if kind == "topk":
        # Exact: ranked values in order, each at least as good as every unranked one.
        sign = -1.0 if maximize else 1.0
        ranked = [sign * values[i] for i in r]
        assert ranked == sorted(ranked)
        rest = [sign * values[i] for i in range(m) if i not in r]
        assert not rest or ranked[-1] <= min(rest)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_judges_give_the_same_rankings_for_candidates_on_cuda() -> None:
    rounds = _random_rounds(10, seed=3)
    make: list[Callable[[], Callable[[torch.Tensor], tuple[int, ...]]]] = [
        lambda: TopKJudge(sphere, k=3),
        lambda: NoisyJudge(sphere, temperature=0.5, swap_prob=0.3, seed=1),
        lambda: NoisyJudge(sphere, model="thurstone", sigma=0.5, seed=1),
    ]
    for new in make:
        on_cpu, on_cuda = new(), new()
        assert [on_cpu(X.double()) for X in rounds] == [on_cuda(X.double().cuda()) for X in rounds]


def test_a_flag_given_as_a_string_is_refused() -> None:
    """``bool("False")`` is True: a string flag would silently rank the wrong way round."""
    f = FunctionTask("sphere").score
    for make in (
        lambda: TopKJudge(f, k=2, maximize="False"),  # type: ignore[arg-type]
        lambda: NoisyJudge(f, k=2, maximize="no"),  # type: ignore[arg-type]
        lambda: ranking_from_values([1.0, 2.0], maximize=1),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match="maximize must be True or False"):
            make()
    assert TopKJudge(f, k=2, maximize=np.bool_(True)).maximize is True


def test_the_old_module_name_still_imports_the_same_judges() -> None:
    """labkit.oracles was this module's name until 2026-11-30; kept for a release."""
    import labkit.judges as new
    import labkit.oracles as old

    assert old.__all__ == new.__all__
    assert all(getattr(old, name) is getattr(new, name) for name in new.__all__)
