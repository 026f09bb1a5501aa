"""Optimizers behind one ask/tell contract (see :mod:`labkit.optim.base`)."""

from __future__ import annotations

from labkit.optim.base import OptimizeResult, RankOptimizer, optimize
from labkit.optim.zo_ranksgd import ZORankSGD

__all__ = ["OptimizeResult", "RankOptimizer", "ZORankSGD", "optimize"]
