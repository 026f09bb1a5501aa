"""A benchmark's method registry: its contenders, each an optimizer kind with its round shape
and tuned constants, keyed by label; :func:`build` makes a contender's optimizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from labkit.optim.base import RankOptimizer


@dataclass(frozen=True)
class Method:
    """One contender of a benchmark.

    ``kind`` names the optimizer (``"zorank"``: ZO-RankSGD, ``"cmaes"``: CMA-ES told ranks,
    ``"zosgd"``: value-based ZO-SGD, ``"prior"``: prior resampling); ``m``, ``k`` and
    ``line_search`` its round shape (``m=None``: the optimizer's default population). ``lr``,
    ``mu`` and ``sigma`` are the constants the benchmark tuned for it; whether they are used as
    they are or scaled to the problem is the benchmark's to say.
    """

    label: str
    kind: str
    m: int | None = 8
    k: int | None = None
    line_search: int = 0
    lr: float = 0.0
    mu: float = 0.0
    sigma: float = 0.0


M = TypeVar("M", bound=Method)


def registry(*methods: M) -> dict[str, M]:
    """``methods`` keyed by their labels, in the order given (a label names one method)."""
    out: dict[str, M] = {}
    for method in methods:
        if method.label in out:
            raise ValueError(f"two methods are labelled {method.label!r}")
        out[method.label] = method
    return out


def build(method: Method, x0: Any, *, seed: int, **options: Any) -> RankOptimizer:
    """``method``'s optimizer from ``x0`` with its round shape, ``seed`` and ``options`` (its
    step sizes in the units of ``x0``, and whatever else that optimizer takes)."""
    # Imported here so that a benchmark's --help stays quick.
    if method.kind == "zorank":
        from labkit.optim.zo_ranksgd import ZORankSGD

        assert method.m is not None
        return ZORankSGD(
            x0, m=method.m, k=method.k, line_search=method.line_search, seed=seed, **options
        )
    if method.kind == "cmaes":
        from labkit.optim.cmaes import CMAES

        return CMAES(x0, m=method.m, seed=seed, **options)
    if method.kind == "zosgd":
        from labkit.optim.zo_sgd import ZOSGD

        assert method.m is not None
        return ZOSGD(x0, m=method.m, seed=seed, **options)
    if method.kind == "prior":
        from labkit.optim.prior import PriorSampling

        assert method.m is not None
        return PriorSampling(x0, m=method.m, seed=seed, **options)
    raise ValueError(f"unknown method kind {method.kind!r}")
