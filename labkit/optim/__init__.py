"""Optimizers behind one ask/tell contract (see :mod:`labkit.optim.base`)."""

from __future__ import annotations

from labkit.optim.base import OptimizeResult, RankOptimizer, optimize
from labkit.optim.cmaes import CMAES
from labkit.optim.image_thompson import ImageThompson
from labkit.optim.preference import PreferenceThompson
from labkit.optim.prior import PriorSampling
from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.optim.zo_sgd import ZOSGD

__all__ = [
    "CMAES",
    "ZOSGD",
    "ImageThompson",
    "OptimizeResult",
    "PreferenceThompson",
    "PriorSampling",
    "RankOptimizer",
    "ZORankSGD",
    "optimize",
]
