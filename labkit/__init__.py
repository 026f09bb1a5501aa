"""labkit: steer a model by ranking what it produces.

The public surface is small; everything else is reached through its module. Every public name
is imported on first use (``labkit.ZORankSGD``, ``from labkit import Session``): ``import labkit``
itself loads nothing heavy, so ``labkit app`` (whose server never needs torch) starts in a moment,
and a script that only optimizes never loads the Jupyter stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are, for type checkers and editors
    from labkit.crowd import CrowdSession
    from labkit.dataset import to_dataset
    from labkit.defaults import make_optimizer
    from labkit.judges import NoisyJudge, ScoreJudge, TopKJudge, ranking_from_values
    from labkit.optim import CMAES, OptimizeResult, RankOptimizer, ZORankSGD, optimize
    from labkit.ranking import Ranking, validate_ranking
    from labkit.roundlog import RoundLog
    from labkit.session import Session
    from labkit.tasks.control import ControlTask
    from labkit.tasks.diffusion import DigitsTask, PipelineTask
    from labkit.tasks.functions import FunctionTask
    from labkit.widgets.progress import ProgressPlot
    from labkit.widgets.ranker import RankingWidget

__version__ = "0.1.0"

__all__ = [
    "CMAES",
    "ControlTask",
    "CrowdSession",
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
    "make_optimizer",
    "optimize",
    "ranking_from_values",
    "to_dataset",
    "validate_ranking",
]

#: Each public name and the module that defines it.
_LAZY = {
    "CMAES": "labkit.optim",
    "make_optimizer": "labkit.defaults",
    "OptimizeResult": "labkit.optim",
    "RankOptimizer": "labkit.optim",
    "ZORankSGD": "labkit.optim",
    "optimize": "labkit.optim",
    "NoisyJudge": "labkit.judges",
    "ScoreJudge": "labkit.judges",
    "TopKJudge": "labkit.judges",
    "ranking_from_values": "labkit.judges",
    "Ranking": "labkit.ranking",
    "validate_ranking": "labkit.ranking",
    "Session": "labkit.session",
    "RoundLog": "labkit.roundlog",
    "to_dataset": "labkit.dataset",
    "CrowdSession": "labkit.crowd",
    "FunctionTask": "labkit.tasks.functions",
    "ControlTask": "labkit.tasks.control",
    "DigitsTask": "labkit.tasks.diffusion",
    "PipelineTask": "labkit.tasks.diffusion",
    "RankingWidget": "labkit.widgets.ranker",
    "ProgressPlot": "labkit.widgets.progress",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
