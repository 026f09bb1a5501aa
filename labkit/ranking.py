"""What a ranking is, defined and validated once.

A *ranking* of a round of ``m`` candidates is a sequence of row indices into that round's
candidate tensor, **best first**. Its length ``k`` is between 1 and ``m``. The ``m - k``
candidates left out are worse than every ranked one, in no known order (an (m, k) ranking oracle
in the paper's words). Indices start at zero.

*Ties* refine a ranking: a position ``p`` in ``ties`` (1 <= p <= k−1) says that ``ranking[p]`` is
*as good as* ``ranking[p − 1]``. Ties chain, so they cut the ranked candidates into groups of
adjacent ones, each group equally good and better than every later group. The unranked candidates
are never tied: they stay worse than every ranked one, in no known order.

Everything that accepts a ranking from outside (an optimizer's ``tell``, the widget's trait, the
round log) calls :func:`validate_ranking` (and :func:`validate_ties`), so a malformed ranking is
refused with the same message wherever it arrives, and never half-applied.

**The ranking graph** G = (V, E) of a round (ZO-RankSGD, Tang et al. 2024) has an edge
(winner, loser) for every pair the answer orders: each ranked candidate beats every candidate of a
later group and every unranked one. :func:`graph_edges` lists E; :func:`graph_coefficients`
reduces it to one number per candidate, which is all the gradient estimate needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import torch

from labkit._checks import integer

__all__ = [
    "Ranking",
    "Ties",
    "answer_ranking",
    "edge_count",
    "graph_coefficients",
    "graph_edges",
    "tie_groups",
    "validate_ranking",
    "validate_ties",
]

#: A validated ranking: row indices, best first.
Ranking = tuple[int, ...]

#: Validated ties of a ranking of length k: positions p in 1..k−1, ascending, none twice;
#: p in ties means ``ranking[p]`` is as good as ``ranking[p − 1]``.
Ties = tuple[int, ...]


def _items(
    value: Any, *, subject: str, elements: str, not_sequence: str, unordered: str
) -> list[Any]:
    """The elements of a 1-D sequence (list, tuple, array, integer tensor), checked only for
    being one: the shared first step of :func:`validate_ranking` and :func:`validate_ties`.

    The messages name what was given: ``subject`` ("a ranking") must be one-dimensional,
    ``elements`` ("ranking indices") must be integers, ``not_sequence`` and ``unordered`` say
    what a non-sequence and an unordered container (a set or a dict) are not.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() != 1:
            raise ValueError(
                f"{subject} must be one-dimensional; got a tensor of shape {tuple(value.shape)}"
            )
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise ValueError(f"{elements} must be integers; got a tensor of dtype {value.dtype}")
        return list(value.tolist())
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(f"{not_sequence}; got {value!r}")
    if isinstance(value, (AbstractSet, Mapping)):
        # A set (or a dict's keys) has no order of its own: reading one as "best first" would
        # silently misread the person's answer.
        raise ValueError(f"{unordered}; a {type(value).__name__} has no order: got {value!r}")
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) != 1:
        raise ValueError(f"{subject} must be one-dimensional; got an array of shape {shape}")
    return list(value)


def validate_ranking(ranking: Any, m: int) -> Ranking:
    """Check ``ranking`` against a round of ``m`` candidates and return it as a tuple of ints.

    Accepts a list, tuple, 1-D NumPy array or 1-D integer tensor. Raises ``ValueError`` that names
    the offending value and the rule it broke: not a sequence, unordered (a set or a dict), empty,
    longer than ``m``, an element that is not an integer (bools and floats are refused, even
    ``2.0``), an index outside ``[0, m)``, or an index given twice.
    """
    if integer(m) is None or m < 1:
        raise ValueError(f"a round must have at least one candidate; got m={m!r}")
    items = _items(
        ranking,
        subject="a ranking",
        elements="ranking indices",
        not_sequence="a ranking must be a sequence of candidate indices, best first",
        unordered="a ranking must be ordered, best first (a list or tuple)",
    )
    if len(items) == 0:
        raise ValueError("a ranking must name at least one candidate (the best); got an empty one")
    if len(items) > m:
        raise ValueError(
            f"a ranking of a round of {m} candidates can name at most {m}; got {len(items)}: "
            f"{list(items)!r}"
        )
    out: list[int] = []
    seen: set[int] = set()
    for pos, item in enumerate(items):
        if integer(item) is None:
            raise ValueError(
                f"ranking position {pos} must be an integer candidate index; got {item!r} "
                f"of type {type(item).__name__}"
            )
        idx = int(item)
        if not 0 <= idx < m:
            raise ValueError(
                f"ranking position {pos} names candidate {idx}, but a round of {m} candidates "
                f"has indices 0..{m - 1}"
            )
        if idx in seen:
            raise ValueError(f"candidate {idx} appears twice in the ranking {list(items)!r}")
        seen.add(idx)
        out.append(idx)
    return tuple(out)


def answer_ranking(
    ranking: Any, *, none_better: bool, incumbent: int | None, m: int, round: int
) -> tuple[Any, str]:
    """The ranking an answer to round ``round`` of ``m`` candidates stands for, and its kind:
    ``"ranking"`` or ``"none_better"`` (the log's ``answer``).

    "None of these is better than the current one" (``none_better``) is the ranking of the
    incumbent alone, ``(incumbent,)``: it needs a round that shows the current iterate
    (``incumbent`` is its row; ``None``: the round shows none), and a ranking given with it must
    be exactly that one. Any other answer needs a ranking, returned as given: the log validates
    it, with its ties. Raises ``ValueError`` naming what is missing or wrong.
    """
    if not none_better:
        if ranking is None:
            raise ValueError("submit() needs a ranking, or none_better=True")
        return ranking, "ranking"
    if incumbent is None:
        raise ValueError(
            f"round {round} does not show the current iterate, so 'none is better than the "
            f"current one' cannot be answered; rank the candidates"
        )
    given = None if ranking is None else validate_ranking(ranking, m)
    if given is not None and given != (incumbent,):
        raise ValueError(
            f"'none is better than the current one' is the ranking [{incumbent}] (the current "
            f"one alone); got {list(given)}"
        )
    # Ties are checked by the log against this ranking of one: there is none to give.
    return (incumbent,), "none_better"


def edge_count(m: int, k: int) -> int:
    """|E| of the ranking graph of an (m, k) ranking: k(k−1)/2 + k(m−k).

    Each of the k ranked candidates beats every candidate ranked below it (k(k−1)/2 pairs) and
    every one of the m−k unranked candidates (k(m−k) pairs).
    """
    if not 1 <= k <= m:
        raise ValueError(f"need 1 <= k <= m; got k={k}, m={m}")
    return k * (k - 1) // 2 + k * (m - k)


def validate_ties(ties: Any, k: int) -> Ties:
    """Check the ``ties`` of a ranking of length ``k`` and return them as a tuple of ints.

    ``None`` or an empty sequence means no ties. Otherwise a list, tuple, 1-D NumPy array or 1-D
    integer tensor of positions ``p`` with ``1 <= p <= k − 1`` (``ranking[p]`` is as good as
    ``ranking[p − 1]``), in ascending order, none twice. Raises ``ValueError`` naming the
    offending value and the rule it broke: not a sequence, unordered (a set or a dict), an element
    that is not an integer (bools and floats are refused), a position outside ``1..k − 1``, a
    position given twice, or positions out of order.
    """
    if integer(k) is None or k < 1:
        raise ValueError(f"ties belong to a ranking of length k >= 1; got k={k!r}")
    if ties is None:
        return ()
    items = _items(
        ties,
        subject="ties",
        elements="tie positions",
        not_sequence=(
            "ties must be a sequence of ranking positions (p: ranking[p] is as good as "
            "ranking[p-1])"
        ),
        unordered="ties must be an ordered sequence of positions (a list or tuple, ascending)",
    )
    out: list[int] = []
    for item in items:
        if integer(item) is None:
            raise ValueError(
                f"a tie must be an integer ranking position; got {item!r} of type "
                f"{type(item).__name__} in {list(items)!r}"
            )
        p = int(item)
        if not 1 <= p <= k - 1:
            if k == 1:
                why = "a ranking of one candidate has no two to tie"
            else:
                why = f"a ranking of {k} candidates has tie positions 1..{k - 1}"
            raise ValueError(f"tie position {p} ties ranking[{p}] with ranking[{p - 1}], but {why}")
        if p in out:
            raise ValueError(f"tie position {p} appears twice in the ties {list(items)!r}")
        if out and p < out[-1]:
            raise ValueError(f"ties must be in ascending order; got {list(items)!r}")
        out.append(p)
    return tuple(out)


def tie_groups(k: int, ties: Ties) -> list[tuple[int, int]]:
    """The tied groups of a ranking of length k, as [start, end) position ranges, best first.

    ``ties`` are validated tie positions (:func:`validate_ties`); a candidate tied with none
    is a group of one.
    """
    tied = set(ties)
    groups: list[tuple[int, int]] = []
    start = 0
    for p in range(1, k + 1):
        if p == k or p not in tied:
            groups.append((start, p))
            start = p
    return groups


def _checked(m: int, ranking: Any, ties: Any) -> tuple[Ranking, Ties]:
    r = validate_ranking(ranking, m)
    return r, validate_ties(ties, len(r))


def graph_edges(m: int, ranking: Any, ties: Any = ()) -> list[tuple[int, int]]:
    """The edges (winner, loser) of the ranking graph of a round of ``m`` candidates.

    Each ranked candidate beats every candidate ranked below it, except those tied with it
    (its group, see :func:`validate_ties`), and every unranked one. Listed winner by winner in
    ranking order, each winner's losers in ranking order, then the unranked in index order.
    Without ties there are :func:`edge_count` ``(m, k)`` edges. ``ranking`` and ``ties`` are
    validated first (``ValueError``).
    """
    r, t = _checked(m, ranking, ties)
    ranked = set(r)
    unranked = [j for j in range(m) if j not in ranked]
    edges: list[tuple[int, int]] = []
    for start, end in tie_groups(len(r), t):
        for p in range(start, end):
            edges.extend((r[p], r[q]) for q in range(end, len(r)))
            edges.extend((r[p], j) for j in unranked)
    return edges


def graph_coefficients(m: int, ranking: Any, ties: Any = ()) -> tuple[list[float], int]:
    """Per-candidate coefficients c (length ``m``) of the ranking graph, and its edge count |E|.

    c_i = (#edges candidate i loses) − (#edges it wins), so that the ZO-RankSGD estimate
    g = (1/|E|) Σ_{(i, j) ∈ E} (ξ_j − ξ_i) is (1/|E|) Σ_i c_i ξ_i. For a ranked candidate in the
    tied group spanning positions [s, e) of k: it loses to the s ranked above its group and wins
    against the k − e ranked below it and the m − k unranked, so c = s − (k − e) − (m − k); an
    unranked one loses to all k ranked and wins nothing, c = k. Without ties s = p, e = p + 1 and
    c = 2p + 1 − m. Σ_i c_i = 0 (each edge adds +1 and −1).

    When ties leave no edge at all (a full ranking with every candidate tied: "all equally good")
    |E| = 0 and every c_i is 0: the answer says nothing about a direction, and an optimizer takes
    no step. ``ranking`` and ``ties`` are validated first (``ValueError``).
    """
    r, t = _checked(m, ranking, ties)
    k = len(r)
    c = [float(k)] * m  # unranked: loses to all k ranked candidates
    n_edges = k * (m - k)
    for start, end in tie_groups(k, t):
        size = end - start
        n_edges += size * (k - end)
        for p in range(start, end):
            c[r[p]] = float(start - (k - end) - (m - k))
    return c, n_edges
