"""Thompson sampling with a second model over what the person saw (labkit.optim.image_thompson)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import pytest
import torch

from labkit.optim.image_thompson import ImageThompson
from labkit.optim.preference import PreferenceThompson
from labkit.optim.prior import PriorSampling

D, PIXELS = 32, 24


def _renderer(seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A stand-in generator that draws one of a few looks: a latent picks a soft mixture of 6
    prototype images of 24 "pixels" (a softmax of 6 random projections), so that images cluster
    as digits do and the person's preference, a quadratic in the image, is far from linear in
    the latent."""
    g = torch.Generator().manual_seed(seed)
    B, protos = torch.randn(6, D, generator=g), torch.randn(6, PIXELS, generator=g)
    return lambda X: torch.softmax(6 * (X.flatten(1) @ B.T) / math.sqrt(D), dim=1) @ protos


def _person(view: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor):
    """Ranks by ‖image − the target image‖², a quadratic in what the person sees."""
    goal = view(target.unsqueeze(0))[0]
    return lambda X: ((view(X) - goal) ** 2).sum(1)


def _best_after(opt, f, rounds: int) -> float:
    best = math.inf
    for _ in range(rounds):
        X = opt.ask()
        values = f(X)
        best = min(best, float(values.min()))
        opt.tell(torch.argsort(values))
    return best


def test_the_image_model_finds_the_pictured_target_sooner_than_the_latent_model() -> None:
    # 10 targets, 6 rounds of 8: the image model's best is closer than the latent model's and
    # than prior samples', in the median, and ŵ′ points at the target's image.
    view = _renderer()
    ours, latent, prior, cosines = [], [], [], []
    for t in range(10):
        g = torch.Generator().manual_seed(100 + t)
        target = torch.randn(D, generator=g)
        x0 = torch.randn(D, generator=g)
        f = _person(view, target)
        opt = ImageThompson(x0, view=view, pool=48, look_rounds=6, prior=0.3, explore=0.15, seed=t)
        ours.append(_best_after(opt, f, 6))
        base = PreferenceThompson(x0, prior=0.3, explore=0.15, seed=t)
        latent.append(_best_after(base, f, 6))
        prior.append(_best_after(PriorSampling(x0, sigma=1.0, m=8, seed=t), f, 6))
        psi = opt._look(target.double().unsqueeze(0))[0]  # the target's image, as ψ
        w = opt._look_w
        assert w is not None
        cosines.append(float(w @ psi / w.norm()))
    assert statistics.median(ours) < 0.5 * statistics.median(latent), (ours, latent)
    assert statistics.median(ours) < 0.5 * statistics.median(prior), (ours, prior)
    assert statistics.median(cosines) > 0.6, cosines


def test_the_image_model_chooses_the_first_rounds_then_the_latent_model_alone() -> None:
    calls: list[int] = []
    view = _renderer()

    def counting(X: torch.Tensor) -> torch.Tensor:
        calls.append(X.shape[0])
        return view(X)

    x0 = torch.randn(D, generator=torch.Generator().manual_seed(1))
    opt = ImageThompson(x0, view=counting, pool=20, look_rounds=3, seed=3)
    shown = []
    for r, ranking in enumerate([[3, 1, 0], [0], [5, 2, 4, 1], [1, 0], [2]]):
        calls.clear()
        shown.append(opt.ask().clone())
        # Round 1 renders x0 with 20 prior samples, rounds 2–3 a pool of 20 Thompson points;
        # from round 4 the latent model alone draws, and nothing is rendered.
        assert calls == [[21], [20], [20], [], []][r], (r, calls)
        opt.tell(ranking)
    # Row 0 is the incumbent: the first ranking's winner, kept by "none is better" ([0]).
    assert torch.equal(shown[1][0], shown[0][3]) and torch.equal(shown[2][0], shown[0][3])
    # The other rows lie on the prior's shell, as PreferenceThompson's do.
    norms = torch.cat([X[1:].norm(dim=1) for X in shown])
    assert torch.allclose(norms, torch.full_like(norms, math.sqrt(D)))
    # After its rounds, the image model holds what it learnt and is no longer told.
    state = opt.state_dict()
    edges = 3 + 3 * 5 + 7 + 6 + 4 * 4  # rounds 1–3 only: k(k−1)/2 + k(m−k) for k = 3, 1, 4
    assert state["look_deltas"].shape[0] == edges


def test_the_first_round_spreads_its_looks() -> None:
    # Greedy farthest point: the first round's images are farther apart than 7 plain draws'.
    view = _renderer()
    spread_ours, spread_plain = [], []
    for seed in range(5):
        x0 = torch.randn(D, generator=torch.Generator().manual_seed(seed))
        X = ImageThompson(x0, view=view, pool=64, seed=seed).ask()
        Y = PreferenceThompson(x0, seed=seed).ask()
        spread_ours.append(float(torch.pdist(view(X)).min()))
        spread_plain.append(float(torch.pdist(view(Y)).min()))
    assert statistics.median(spread_ours) > 1.3 * statistics.median(spread_plain)


@pytest.mark.parametrize("pending", [False, True])
@pytest.mark.parametrize("told", [1, 2, 4])
def test_state_dict_resumes_the_same_rounds_without_saving_renders(
    pending: bool, told: int
) -> None:
    view = _renderer()
    x0 = torch.randn(D, generator=torch.Generator().manual_seed(2))
    opt = ImageThompson(x0, view=view, pool=16, seed=8)
    for ranking in ([2, 0, 1], [0], [4, 3], [1])[:told]:
        opt.ask()
        opt.tell(ranking)
    if pending:
        opt.ask()
    state = opt.state_dict()
    assert state["look_w"].shape == (PIXELS,)
    assert not any(isinstance(v, torch.Tensor) and v.shape[:1] == (16,) for v in state.values())
    other = ImageThompson(x0, view=view, pool=16, seed=8)
    other.load_state_dict(state)
    for ranking in ([1, 0], [3]):
        assert torch.equal(opt.ask(), other.ask())
        opt.tell(ranking)
        other.tell(ranking)
    assert torch.equal(opt.ask(), other.ask())
    # Another pool size is another optimizer.
    with pytest.raises(ValueError):
        ImageThompson(x0, view=view, pool=17, seed=8).load_state_dict(state)


def test_bad_options_and_a_bad_view_are_named() -> None:
    x0 = torch.zeros(D)
    with pytest.raises(ValueError, match="view must render candidates"):
        ImageThompson(x0, view=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"pool must be an int >= m - 1 = 7"):
        ImageThompson(x0, view=_renderer(), pool=6)
    with pytest.raises(ValueError, match="look_explore"):
        ImageThompson(x0, view=_renderer(), look_explore=0)
    with pytest.raises(ValueError, match="look_rounds must be an int >= 1"):
        ImageThompson(x0, view=_renderer(), look_rounds=0)
    opt = ImageThompson(x0, view=lambda X: X[:1], pool=8)
    with pytest.raises(ValueError, match=r"one image per candidate \(9\)"):
        opt.ask()
