"""labkit: steer a model by ranking what it produces.

The public surface is small; everything else is reached through its module. The widgets are
imported on first use (``labkit.RankingWidget``), so a script that only optimizes never loads the
Jupyter stack.
"""

from __future__ import annotations

from typing import Any

from labkit.optim import CMAES, OptimizeResult, RankOptimizer, ZORankSGD, optimize
from labkit.oracles import NoisyJudge, ScoreJudge, TopKJudge, ranking_from_values
from labkit.ranking import Ranking, validate_ranking
from labkit.session import Session
from labkit.store import RoundLog
from labkit.tasks.functions import FunctionTask

__version__ = "0.1.0"

__all__ = [
    "CMAES",
    "ControlTask",
    "DigitsTask",
    "FunctionTask",
    "NoisyJudge",
    "OptimizeResult",
    "PipelineTask",
    "ProgressPlot",
    "RankOptimizer",
    "Ranking",
    "RankingWidget",
    "RoundLog",
    "ScoreJudge",
    "Session",
    "TopKJudge",
    "ZORankSGD",
    "__version__",
    "optimize",
    "ranking_from_values",
    "validate_ranking",
]

_LAZY = {
    "ControlTask": "labkit.tasks.control",
    "DigitsTask": "labkit.tasks.diffusion",
    "PipelineTask": "labkit.tasks.diffusion",
    "RankingWidget": "labkit.widgets.ranker",
    "ProgressPlot": "labkit.widgets.progress",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
