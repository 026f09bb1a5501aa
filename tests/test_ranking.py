"""labkit.ranking: ties, and the ranking graph built from a ranking and its ties."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from labkit.ranking import (
    edge_count,
    graph_coefficients,
    graph_edges,
    tie_groups,
    validate_ranking,
    validate_ties,
)


# -- validate_ties -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ties", "k", "expected"),
    [
        (None, 1, ()),
        ((), 1, ()),
        ([], 4, ()),
        ([1], 2, (1,)),
        ((1, 2, 3), 4, (1, 2, 3)),
        (np.array([2, 3], dtype=np.int64), 5, (2, 3)),
        (torch.tensor([1, 4]), 5, (1, 4)),
        ([np.int32(2)], 3, (2,)),
    ],
)
def test_validate_ties_accepts_positions_in_order(ties: Any, k: int, expected: tuple[int]) -> None:
    out = validate_ties(ties, k)
    assert out == expected and type(out) is tuple
    assert all(type(p) is int for p in out)


@pytest.mark.parametrize(
    ("ties", "k", "match"),
    [
        (
            [0],
            3,
            r"tie position 0 ties ranking\[0\] with ranking\[-1\], but a ranking of 3 "
            r"candidates has tie positions 1\.\.2",
        ),
        ([3], 3, "tie position 3 .* positions 1..2"),
        ([-1], 3, "tie position -1"),
        ([1], 1, "a ranking of one candidate has no two to tie"),
        ([1, 1], 3, r"tie position 1 appears twice in the ties \[1, 1\]"),
        ([2, 1], 3, r"ties must be in ascending order; got \[2, 1\]"),
        ([1.0], 3, "a tie must be an integer ranking position; got 1.0 of type float"),
        ([True], 3, "got True of type bool"),
        (["1"], 3, "got '1' of type str"),
        ({1, 2}, 3, "a set has no order"),
        ({1: "x"}, 3, "a dict has no order"),
        ("12", 3, "ties must be a sequence of ranking positions"),
        (1, 3, "ties must be a sequence"),
        (torch.tensor([1.0]), 3, "dtype torch.float32"),
        (torch.tensor([[1]]), 3, "one-dimensional"),
        (np.array([[1]]), 3, "one-dimensional"),
        ([1], 0, "k >= 1"),
        ([1], True, "k >= 1"),
    ],
)
def test_validate_ties_names_the_problem(ties: Any, k: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_ties(ties, k)


# -- the ranking graph -------------------------------------------------------------------------
def _brute_force_edges(m: int, ranking: tuple[int, ...], ties: tuple[int, ...]) -> set[Any]:
    """E straight from the definition: i beats j when i is ranked and j is unranked, or both are
    ranked, i above j, and no chain of ties joins them."""
    pos = {c: p for p, c in enumerate(ranking)}

    def tied(a: int, b: int) -> bool:  # positions a < b
        return all(q in ties for q in range(a + 1, b + 1))

    edges = set()
    for i, j in itertools.permutations(range(m), 2):
        if i not in pos:
            continue
        if j not in pos or (pos[i] < pos[j] and not tied(pos[i], pos[j])):
            edges.add((i, j))
    return edges


def _random_answer(rng: np.random.Generator, m: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    k = int(rng.integers(1, m + 1))
    ranking = tuple(int(i) for i in rng.permutation(m)[:k])
    ties = tuple(p for p in range(1, k) if rng.random() < 0.4)
    return ranking, ties


@pytest.mark.parametrize(
    ("k", "ties", "groups"),
    [
        (1, (), [(0, 1)]),
        (3, (), [(0, 1), (1, 2), (2, 3)]),
        (4, (1,), [(0, 2), (2, 3), (3, 4)]),
        (4, (2, 3), [(0, 1), (1, 4)]),
        (3, (1, 2), [(0, 3)]),
    ],
)
def test_tie_groups_are_the_position_ranges_tied_together(
    k: int, ties: tuple[int, ...], groups: list[tuple[int, int]]
) -> None:
    assert tie_groups(k, ties) == groups


def test_graph_edges_and_coefficients_match_a_brute_force_enumeration() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(1, 9))
        ranking, ties = _random_answer(rng, m)
        edges = graph_edges(m, ranking, ties)
        expected = _brute_force_edges(m, ranking, ties)
        assert len(edges) == len(set(edges)) and set(edges) == expected, (m, ranking, ties)
        c, n_edges = graph_coefficients(m, ranking, ties)
        assert n_edges == len(expected)
        losses = [sum(1 for _, j in expected if j == i) for i in range(m)]
        wins = [sum(1 for w, _ in expected if w == i) for i in range(m)]
        assert c == [float(lo - w) for lo, w in zip(losses, wins, strict=True)]
        assert all(type(v) is float for v in c) and sum(c) == 0


@pytest.mark.parametrize("ties", [(), None, []])
def test_without_ties_the_graph_is_the_papers(ties: Any) -> None:
    m = 7
    for ranking in ([3], [2, 0, 6], [1, 2, 3, 4, 5, 6, 0], [6, 5]):
        k = len(ranking)
        c, n_edges = graph_coefficients(m, ranking, ties)
        assert n_edges == edge_count(m, k) == len(graph_edges(m, ranking, ties))
        for p, i in enumerate(ranking):
            assert c[i] == 2 * p + 1 - m
        assert all(c[j] == k for j in range(m) if j not in ranking)


def test_a_tie_removes_the_edge_between_the_tied_and_shares_their_coefficient() -> None:
    m, ranking = 5, (4, 2, 0)
    assert (4, 2) in graph_edges(m, ranking)
    assert (4, 2) not in graph_edges(m, ranking, (1,))
    c_untied, e_untied = graph_coefficients(m, ranking)
    c, n_edges = graph_coefficients(m, ranking, (1,))
    assert n_edges == e_untied - 1
    assert c[4] == c[2] == (c_untied[4] + c_untied[2]) / 2  # the mean of the untied ones
    assert c[0] == c_untied[0] and c[1] == c[3] == 3.0
    # Ties chain: 4 = 2 = 0 is one group, and only the unranked are beaten.
    assert sorted(graph_edges(m, ranking, (1, 2))) == [(i, j) for i in (0, 2, 4) for j in (1, 3)]


def test_everything_tied_leaves_no_edge_and_all_zero_coefficients() -> None:
    c, n_edges = graph_coefficients(3, [2, 0, 1], (1, 2))
    assert (c, n_edges) == ([0.0, 0.0, 0.0], 0)
    assert graph_edges(3, [2, 0, 1], (1, 2)) == []
    # With an unranked candidate left there is still something to learn.
    assert graph_coefficients(4, [2, 0, 1], (1, 2))[1] == 3


def test_graph_functions_validate_their_input() -> None:
    with pytest.raises(ValueError, match="appears twice in the ranking"):
        graph_edges(3, [0, 0])
    with pytest.raises(ValueError, match="tie position 2"):
        graph_coefficients(3, [0, 1], (2,))
    assert validate_ranking((0,), 1) == (0,)
