"""Tests of labkit.consensus: crowd consensus (Plackett–Luce, Borda), Kendall τ-b, rater weights."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from labkit.consensus import _RIDGE, Consensus, RaterWeights, consensus, kendall_tau
from labkit.ranking import graph_edges

METHODS = ["plackett-luce", "borda"]


def _pl_sample(theta: np.ndarray, rng: np.random.Generator, k: int | None = None) -> list[int]:
    """A Plackett–Luce ranking with log-strengths θ (Gumbel-max: sort θ + Gumbel noise)."""
    order = np.argsort(-(theta + rng.gumbel(size=len(theta))), kind="stable")
    return [int(i) for i in order[: len(theta) if k is None else k]]


def _log_posterior(theta, rankings, ties, weights, m):
    """The Plackett–Luce log posterior written out directly, one choice at a time (Efron ties),
    independently of the module's stage matrix: the test's reference."""
    total = 0.0
    g = np.exp(theta)
    for r, t, w in zip(rankings, ties, weights, strict=True):
        groups: list[list[int]] = []
        for p, item in enumerate(r):
            if p in t:
                groups[-1].append(item)
            else:
                groups.append([item])
        remaining = set(range(m))
        for group in groups:
            s = sum(g[j] for j in remaining)
            tg = sum(g[j] for j in group)
            d = len(group)
            total += w * (
                sum(theta[i] for i in group) - sum(math.log(s - (el / d) * tg) for el in range(d))
            )
            remaining -= set(group)
    return total - 0.5 * _RIDGE * float(theta @ theta)


# -- known cases ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_unanimous_raters_give_their_ranking(method):
    r = [3, 0, 4, 1, 2]
    c = consensus([r, r, r], m=5, method=method)
    assert isinstance(c, Consensus)
    assert c.ranking == tuple(r)
    assert c.ties == ()
    assert c.method == method
    assert len(c.scores) == 5
    # Higher score first.
    assert [c.scores[i] for i in c.ranking] == sorted(c.scores, reverse=True)


@pytest.mark.parametrize("method", METHODS)
def test_two_opposite_raters_tie_in_index_order(method):
    c = consensus([[1, 0], [0, 1]], m=2, method=method)
    assert c.scores[0] == pytest.approx(c.scores[1], abs=1e-12)
    assert c.ranking == (0, 1)  # the lower row index first
    assert c.ties == (1,)


def test_opposite_full_rankings_borda_ties_everything():
    r = list(range(8))
    c = consensus([r, r[::-1]], m=8, method="borda")
    assert c.scores == (7.0,) * 8  # each item beats 7 in total over the two rankings
    assert c.ranking == tuple(range(8))
    assert c.ties == tuple(range(1, 8))


def test_opposite_full_rankings_pl_ties_mirror_pairs():
    # Reversing both rankings and relabelling i -> 7 - i maps the data onto itself, so θ_i =
    # θ_{7-i}; each mirror pair is one tied group, listed lower index first.
    r = list(range(8))
    c = consensus([r, r[::-1]], m=8)
    for i in range(4):
        assert c.scores[i] == pytest.approx(c.scores[7 - i], abs=1e-12)
    assert c.ties == (1, 3, 5, 7)
    pairs = [c.ranking[p : p + 2] for p in range(0, 8, 2)]
    assert sorted(pairs) == [(0, 7), (1, 6), (2, 5), (3, 4)]
    # The pairs are not all tied with each other: the answers do say something (PL's first
    # choices are made among more candidates than its last ones).
    assert len({round(s, 6) for s in c.scores}) == 4


def _condorcet_order(rankings, m):
    """The order in which each candidate beats every later one by a majority of raters."""
    wins = Counter(e for r in rankings for e in graph_edges(m, r))
    beats = {i: sum(wins[(i, j)] > wins[(j, i)] for j in range(m) if j != i) for i in range(m)}
    order = sorted(range(m), key=lambda i: -beats[i])
    assert [beats[i] for i in order] == list(range(m - 1, -1, -1)), "no Condorcet order"
    return tuple(order)


@pytest.mark.parametrize("method", METHODS)
def test_majority_on_every_pair_gives_the_condorcet_order(method):
    rankings = [[0, 1, 2, 3], [1, 0, 3, 2], [0, 2, 1, 3]]
    assert _condorcet_order(rankings, 4) == (0, 1, 2, 3)
    # Relabel the candidates so that the answer is not simply the identity.
    perm = [2, 0, 3, 1]
    relabelled = [[perm[i] for i in r] for r in rankings]
    want = _condorcet_order(relabelled, 4)
    assert want == (2, 0, 3, 1)
    assert consensus(relabelled, m=4, method=method).ranking == want


def test_borda_hand_computed_with_top_k_and_full_rankings():
    # m = 5. Full [0 1 2 3 4]: 4 3 2 1 0. Top-2 [1 0]: 1 -> 4, 0 -> 3, the three unranked share
    # places 2..4 (each ties with 2 others: 0.5 * 2 = 1). Top-1 [0]: 0 -> 4, the rest 0.5 * 3.
    rankings = [[0, 1, 2, 3, 4], [1, 0], [0]]
    c = consensus(rankings, m=5, method="borda")
    assert c.scores == (11.0, 8.5, 4.5, 3.5, 2.5)
    assert c.ranking == (0, 1, 2, 3, 4)
    assert c.ties == ()
    w = consensus(rankings, m=5, method="borda", weights=[1.0, 2.0, 0.25])
    assert w.scores == (4 + 6 + 1, 3 + 8 + 0.375, 2 + 2 + 0.375, 1 + 2 + 0.375, 0 + 2 + 0.375)
    assert w.ranking == (1, 0, 2, 3, 4)


@pytest.mark.parametrize("method", METHODS)
def test_top_k_mixed_with_full_rankings(method):
    rankings = [[0, 1, 2, 3, 4], [1, 0], [0]]
    c = consensus(rankings, m=5, method=method)
    assert c.ranking == (0, 1, 2, 3, 4)
    top2 = consensus(rankings, m=5, method=method, k=2)
    assert top2.ranking == (0, 1)
    assert top2.scores == c.scores


@pytest.mark.parametrize("method", METHODS)
def test_incumbent_answers_are_top1_rankings(method):
    # Two raters say "none is better than the incumbent (row 3)", one ranks 3 second.
    c = consensus([[3], [0, 3, 1, 2], [3]], m=4, method=method)
    assert c.ranking == (3, 0, 1, 2)


def test_pl_weighs_a_full_ranking_against_top1_answers():
    # Known, wanted behaviour of the model, pinned so that a change is noticed: two top-1
    # answers for row 3 and one full ranking with 3 last. Borda (3: 3 + 0 + 3 = 6 points, 0:
    # 1 + 3 + 1 = 5) and the pairwise majority put 3 first; Plackett–Luce does not: the full
    # ranking is three choices (0 from all, 1 from {1, 2, 3}, 2 from {2, 3}), each one evidence
    # against 3, while each top-1 answer is a single choice.
    rankings = [[3], [0, 1, 2, 3], [3]]
    assert consensus(rankings, m=4, method="borda").ranking == (3, 0, 1, 2)
    assert consensus(rankings, m=4).ranking == (0, 3, 1, 2)


@pytest.mark.parametrize("method", METHODS)
def test_weight_zero_removes_a_rater_exactly(method):
    a, b, c = [0, 2, 1, 3], [3, 2], [1, 0, 3, 2]
    with_zero = consensus(
        [a, b, c], m=4, method=method, weights=[0.7, 0.0, 1.3], ties=[None, (1,), [2]]
    )
    without = consensus([a, c], m=4, method=method, weights=[0.7, 1.3], ties=[None, [2]])
    assert with_zero == without  # bit for bit: tuples of floats compare exactly
    # ... and the rater does matter when weighted.
    assert consensus([a, b, c], m=4, method=method, weights=[0.7, 1.0, 1.3]) != without


@pytest.mark.parametrize("method", METHODS)
def test_weight_two_counts_as_two_raters(method):
    a, b = [0, 1, 2], [2, 1, 0]
    doubled = consensus([a, b], m=3, method=method, weights=[2.0, 1.0])
    repeated = consensus([a, a, b], m=3, method=method)
    assert doubled.ranking == repeated.ranking == (0, 1, 2)
    assert doubled.scores == pytest.approx(repeated.scores, abs=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_rater_ties_become_consensus_ties(method):
    # One rater: 2 and 0 equally good, then 1, then the unranked 3.
    c = consensus([[2, 0, 1]], m=4, ties=[[1]], method=method)
    assert c.ranking == (0, 2, 1, 3)
    assert c.ties == (1,)
    if method == "borda":
        # 2 and 0 each beat 1 and 3 and tie with each other: 2.5; 1 beats 3; 3 beats nobody.
        assert c.scores == (2.5, 1.0, 2.5, 0.0)
    # A top-k consensus keeps only the ties inside its k positions.
    assert consensus([[2, 0, 1]], m=4, ties=[[1]], method=method, k=1).ties == ()
    assert consensus([[2, 0, 1]], m=4, ties=[[1]], method=method, k=2).ties == (1,)


def test_ties_split_with_other_raters():
    # Rater 0 ties 0 and 1; rater 1 prefers 1: the crowd prefers 1, not tied any more.
    for method in METHODS:
        c = consensus([[0, 1, 2], [1, 0, 2]], m=3, ties=[[1], None], method=method)
        assert c.ranking == (1, 0, 2)
        assert c.ties == ()


def test_pl_scores_are_the_posterior_mode():
    """The returned θ is a stationary point (so, by concavity, the maximum) of the log posterior
    written out independently, with Efron's ties, top-k rankings and weights."""
    m = 5
    rankings = [[0, 1, 2, 3, 4], [1, 0], [4, 2, 3], [2], [0, 3, 1, 4, 2]]
    ties = [(), (1,), (1, 2), (), (2,)]
    weights = [1.0, 0.5, 2.0, 1.0, 0.25]
    theta = np.array(consensus(rankings, m=m, ties=ties, weights=weights).scores)
    h = 1e-5
    grad = np.array(
        [
            (
                _log_posterior(theta + h * e, rankings, ties, weights, m)
                - _log_posterior(theta - h * e, rankings, ties, weights, m)
            )
            / (2 * h)
            for e in np.eye(m)
        ]
    )
    assert np.max(np.abs(grad)) < 1e-7
    assert abs(theta.sum()) < 1e-10  # the ridge centres the scores
    # Moving away lowers the posterior.
    base = _log_posterior(theta, rankings, ties, weights, m)
    for e in np.eye(m):
        assert _log_posterior(theta + 0.01 * e, rankings, ties, weights, m) < base


def test_pl_scores_finite_when_mle_does_not_exist():
    # Unanimous raters: the MLE of the top item is +inf; the prior keeps every score finite.
    c = consensus([[0, 1, 2, 3]] * 30, m=4)
    assert all(math.isfinite(s) for s in c.scores)
    assert c.ranking == (0, 1, 2, 3)
    assert c.scores[0] > c.scores[1] > c.scores[2] > c.scores[3]


# -- recovery -------------------------------------------------------------------------------------
def test_pl_recovers_known_strengths():
    theta = np.array([0.3, 1.5, -0.9, 0.9, -1.5, -0.3])  # true log-strengths, centred
    rng = np.random.default_rng(20240611)
    rankings = [_pl_sample(theta, rng) for _ in range(200)]
    c = consensus(rankings, m=6)
    truth = [int(i) for i in np.argsort(-theta)]
    assert kendall_tau(c.ranking, truth, m=6) >= 0.9
    est = np.array(c.scores)
    # With 200 full rankings of 6 the standard error of each centred log-strength is about 0.08
    # (the largest of the six errors averages 0.13 over seeds, and stayed below 0.37 over 100
    # seeds); 0.45 passes for any seed a correct fit is given, a biased one does not.
    assert np.max(np.abs(est - theta)) < 0.45


def test_pl_recovers_known_strengths_from_top_k():
    theta = np.array([1.2, 0.6, 0.0, -0.6, -1.2])
    rng = np.random.default_rng(7)
    # A mix: 100 top-2, 100 full rankings.
    rankings = [_pl_sample(theta, rng, k=2) for _ in range(100)]
    rankings += [_pl_sample(theta, rng) for _ in range(100)]
    c = consensus(rankings, m=5)
    assert kendall_tau(c.ranking, [0, 1, 2, 3, 4], m=5) >= 0.9
    assert np.max(np.abs(np.array(c.scores) - theta)) < 0.5


# -- kendall_tau ----------------------------------------------------------------------------------
def test_kendall_tau_identical_and_reversed():
    r = [4, 2, 0, 1, 3]
    assert kendall_tau(r, r, m=5) == 1.0
    assert kendall_tau(r, r[::-1], m=5) == -1.0


def test_kendall_tau_hand_computed_partial():
    # Full vs top-1 (m = 4): b orders only the 3 pairs (0, j), all concordant with a; a orders 6.
    assert kendall_tau([0, 1, 2, 3], [0], m=4) == pytest.approx(3 / math.sqrt(6 * 3))
    # a = top-2 [1, 0] of 3 (levels 1:0, 0:1, 2:2), b = [0, 1, 2]: (0,1) discordant, (0,2) and
    # (1,2) concordant: (2 - 1) / sqrt(3 * 3).
    assert kendall_tau([1, 0], [0, 1, 2], m=3) == pytest.approx(1 / 3)
    # Two top-1 answers naming different rows (m = 3): a orders (0,1), (0,2); b (1,0), (1,2);
    # the only pair both order is (0, 1), discordant: -1 / sqrt(2 * 2).
    assert kendall_tau([0], [1], m=3) == pytest.approx(-0.5)
    # Ties: a ties 0 and 1 at the top of [0, 1, 2]; b = [0, 1, 2]: a orders 2 pairs, both
    # concordant; b orders 3: 2 / sqrt(2 * 3).
    assert kendall_tau([0, 1, 2], [0, 1, 2], m=3, ties_a=[1]) == pytest.approx(2 / math.sqrt(6))


def test_kendall_tau_symmetric():
    rng = np.random.default_rng(3)
    for _ in range(50):
        m = int(rng.integers(2, 9))
        ka, kb = int(rng.integers(1, m + 1)), int(rng.integers(1, m + 1))
        a = [int(i) for i in rng.permutation(m)[:ka]]
        b = [int(i) for i in rng.permutation(m)[:kb]]
        ta = [1] if ka > 2 else None
        assert kendall_tau(a, b, m=m, ties_a=ta) == kendall_tau(b, a, m=m, ties_b=ta)
        assert -1.0 <= kendall_tau(a, b, m=m) <= 1.0


def test_kendall_tau_undefined_is_zero():
    assert kendall_tau([0], [0], m=1) == 0.0
    all_tied = dict(ties_a=[1, 2])
    assert kendall_tau([0, 1, 2], [2, 1, 0], m=3, **all_tied) == 0.0


def test_kendall_tau_refuses_bad_rankings():
    with pytest.raises(ValueError, match="appears twice"):
        kendall_tau([0, 0], [0, 1], m=2)
    with pytest.raises(ValueError, match=r"indices 0\.\.2"):
        kendall_tau([0, 5], [0, 1], m=3)
    with pytest.raises(ValueError, match="tie position 3"):
        kendall_tau([0, 1], [0, 1], m=3, ties_b=[3])


# -- rater weights --------------------------------------------------------------------------------
def _crowd_rounds(rw: RaterWeights, n_rounds: int, seed: int) -> dict[str, float]:
    """Simulate a crowd: 6 good raters (Plackett–Luce around hidden values), a random one and a
    contrary one (the reverse of a good answer); weights -> consensus -> τ -> update."""
    m = 8
    rng = np.random.default_rng(seed)
    raters = [f"good{i}" for i in range(6)] + ["random", "contrary"]
    for _ in range(n_rounds):
        theta = 1.2 * rng.standard_normal(m)  # this round's candidates, 'true' log-strengths
        answers = [_pl_sample(5 * theta, rng) for _ in range(6)]
        answers.append([int(i) for i in rng.permutation(m)])
        answers.append(_pl_sample(5 * theta, rng)[::-1])
        c = consensus(answers, m=m, weights=rw.weights(raters))
        for rater, r in zip(raters, answers, strict=True):
            rw.update(rater, kendall_tau(r, c.ranking, m=m))
    return {r: rw.weight(r) for r in raters}


def test_rater_weights_downweight_random_and_contrary_raters():
    rw = RaterWeights()
    w = _crowd_rounds(rw, 20, seed=11)
    assert w["contrary"] == 0.0
    assert w["random"] < 0.5
    for i in range(6):
        assert w[f"good{i}"] >= 0.8, w


def test_rater_weights_rule():
    rw = RaterWeights(window=4, prior_rounds=2.0)
    assert rw.weight("new") == 1.0
    rw.update("a", -1.0)
    assert rw.weight("a") == pytest.approx((2.0 - 1.0) / 3)
    for _ in range(4):
        rw.update("a", -0.5)
    assert rw.rounds("a") == 4  # only the last `window` rounds count
    assert rw.weight("a") == 0.0  # (2 - 2) / 6 = 0
    for _ in range(4):
        rw.update("a", 1.0)
    assert rw.weight("a") == 1.0  # earned back
    assert rw.weights(["a", "new"]) == [1.0, 1.0]


def test_rater_weights_state_round_trip_is_exact():
    rw = RaterWeights(window=10, prior_rounds=3.0)
    _crowd_rounds(rw, 15, seed=5)
    state = json.loads(json.dumps(rw.state_dict()))  # survives the round log's JSON
    back = RaterWeights(window=10, prior_rounds=3.0)
    back.load_state_dict(state)
    raters = sorted(state["taus"])
    assert back.weights(raters) == rw.weights(raters)
    assert back.state_dict() == rw.state_dict()
    # Replaying the same rounds into a fresh instance rebuilds the same weights.
    replay = RaterWeights(window=10, prior_rounds=3.0)
    _crowd_rounds(replay, 15, seed=5)
    assert replay.weights(raters) == rw.weights(raters)
    # Both continue identically.
    rw.update(raters[0], 0.25)
    back.update(raters[0], 0.25)
    assert back.weights(raters) == rw.weights(raters)


def test_rater_weights_refuse_bad_input():
    rw = RaterWeights()
    with pytest.raises(ValueError, match=r"tau must be a finite number in \[-1, 1\]; got 1.5"):
        rw.update("a", 1.5)
    with pytest.raises(ValueError, match="tau must be a finite number"):
        rw.update("a", float("nan"))
    with pytest.raises(ValueError, match="rater must be a string id"):
        rw.update(3, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window must be a positive integer"):
        RaterWeights(window=0)
    with pytest.raises(ValueError, match="prior_rounds must be a finite number >= 0"):
        RaterWeights(prior_rounds=-1)
    with pytest.raises(ValueError, match="saved with window=5"):
        rw.load_state_dict(RaterWeights(window=5).state_dict())
    with pytest.raises(ValueError, match="more than window=2"):
        RaterWeights(window=2).load_state_dict(
            {"window": 2, "prior_rounds": 3.0, "taus": {"a": [0.0, 0.0, 0.0]}}
        )


# -- determinism and input forms ------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_same_inputs_bit_identical(method):
    rng = np.random.default_rng(0)
    rankings = [[int(i) for i in rng.permutation(8)[: int(rng.integers(1, 9))]] for _ in range(30)]
    weights = [float(x) for x in rng.random(30)]
    a = consensus(rankings, m=8, method=method, weights=weights)
    b = consensus([list(r) for r in rankings], m=8, method=method, weights=list(weights))
    assert a == b
    assert np.array(a.scores).tobytes() == np.array(b.scores).tobytes()
    # Arrays and tensors are read as the same rankings.
    c = consensus(
        [torch.tensor(r) for r in rankings],
        m=8,
        method=method,
        weights=np.array(weights),
    )
    assert c == a


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rankings=[]), "at least one rater's ranking; got an empty list"),
        (
            dict(rankings=[[0, 1], [0, 4]]),
            "rater 1's ranking: ranking position 1 names candidate 4,",
        ),
        (dict(rankings=[[0, 1, 1]]), "rater 0's ranking: candidate 1 appears twice"),
        (dict(rankings=[[0, 1]], ties=[[1], None]), "1 rankings but 2 ties"),
        (dict(rankings=[[0, 1]], ties=[[2]]), "rater 0's ties: tie position 2"),
        (dict(rankings=[[0], [1]], weights=[1.0]), "2 rankings but 1 weights"),
        (dict(rankings=[[0], [1]], weights=[1.0, -0.5]), r"weights\[1\] must be a finite"),
        (dict(rankings=[[0], [1]], weights=[1.0, math.nan]), r"weights\[1\] must be a finite"),
        (dict(rankings=[[0], [1]], weights=[0, 0.0]), "positive weight; got all zero"),
        (dict(rankings=[[0]], method="kemeny"), "method must be one of"),
        (dict(rankings=[[0]], k=5), "k must be None .* in 1..4; got 5"),
        (dict(rankings=[[0]], k=0), "in 1..4; got 0"),
        (dict(rankings=[[0]], m=0), "at least one candidate; got m=0"),
        (dict(rankings="0123"), "one entry per rater"),
    ],
)
def test_bad_input_is_refused_with_a_message(kwargs, message):
    kwargs = {"m": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        consensus(**kwargs)
