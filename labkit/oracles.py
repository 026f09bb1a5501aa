"""The old name of :mod:`labkit.judges` (the machine judges), kept working for a release.

Import from ``labkit.judges``; this module re-exports its public names and nothing else.
"""

from labkit.judges import Judge, NoisyJudge, ScoreJudge, TopKJudge, ranking_from_values

__all__ = ["Judge", "NoisyJudge", "ScoreJudge", "TopKJudge", "ranking_from_values"]
