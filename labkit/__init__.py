"""labkit: steer a model by ranking what it produces.

The public surface is small; everything else is reached through its module.
"""

from __future__ import annotations

from labkit.optim import OptimizeResult, RankOptimizer, ZORankSGD, optimize
from labkit.ranking import Ranking, validate_ranking

__version__ = "0.1.0"

__all__ = [
    "OptimizeResult",
    "RankOptimizer",
    "Ranking",
    "ZORankSGD",
    "__version__",
    "optimize",
    "validate_ranking",
]
