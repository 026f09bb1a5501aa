"""What a ranking is, defined and validated once.

A *ranking* of a round of ``m`` candidates is a sequence of row indices into that round's
candidate tensor, **best first**. Its length ``k`` is between 1 and ``m``. The ``m - k``
candidates left out are worse than every ranked one, in no known order (an (m, k) ranking oracle
in the paper's words). Indices start at zero.

Everything that accepts a ranking from outside (an optimizer's ``tell``, the widget's trait, the
round log) calls :func:`validate_ranking`, so a malformed ranking is refused with the same message
wherever it arrives, and never half-applied.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import torch

__all__ = ["Ranking", "edge_count", "validate_ranking"]

#: A validated ranking: row indices, best first.
Ranking = tuple[int, ...]


def validate_ranking(ranking: Any, m: int) -> Ranking:
    """Check ``ranking`` against a round of ``m`` candidates and return it as a tuple of ints.

    Accepts a list, tuple, 1-D NumPy array or 1-D integer tensor. Raises ``ValueError`` that names
    the offending value and the rule it broke: not a sequence, unordered (a set or a dict), empty,
    longer than ``m``, an element that is not an integer (bools and floats are refused, even
    ``2.0``), an index outside ``[0, m)``, or an index given twice.
    """
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
        raise ValueError(f"a round must have at least one candidate; got m={m!r}")
    if isinstance(ranking, torch.Tensor):
        if ranking.dim() != 1:
            raise ValueError(
                f"a ranking must be one-dimensional; got a tensor of shape {tuple(ranking.shape)}"
            )
        if (
            ranking.dtype.is_floating_point
            or ranking.dtype.is_complex
            or ranking.dtype == torch.bool
        ):
            raise ValueError(
                f"ranking indices must be integers; got a tensor of dtype {ranking.dtype}"
            )
        items: Sequence[Any] = ranking.tolist()
    elif isinstance(ranking, (str, bytes)) or not hasattr(ranking, "__len__"):
        raise ValueError(
            f"a ranking must be a sequence of candidate indices, best first; got {ranking!r}"
        )
    elif isinstance(ranking, (AbstractSet, Mapping)):
        # A set (or a dict's keys) has no order of its own: reading one as "best first" would
        # silently misread the person's ranking.
        raise ValueError(
            f"a ranking must be ordered, best first (a list or tuple); a {type(ranking).__name__} "
            f"has no order: got {ranking!r}"
        )
    else:
        shape = getattr(ranking, "shape", None)
        if shape is not None and len(shape) != 1:
            raise ValueError(f"a ranking must be one-dimensional; got an array of shape {shape}")
        items = list(ranking)
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
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
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


def edge_count(m: int, k: int) -> int:
    """|E| of the ranking graph of an (m, k) ranking: k(k−1)/2 + k(m−k).

    Each of the k ranked candidates beats every candidate ranked below it (k(k−1)/2 pairs) and
    every one of the m−k unranked candidates (k(m−k) pairs).
    """
    if not 1 <= k <= m:
        raise ValueError(f"need 1 <= k <= m; got k={k}, m={m}")
    return k * (k - 1) // 2 + k * (m - k)
