"""The old name of :mod:`labkit.roundlog` (the round log), kept working for a release.

Import from ``labkit.roundlog``; this module re-exports its public names and nothing else.
"""

from labkit import roundlog as _new
from labkit.roundlog import *  # noqa: F403 - exactly roundlog's __all__

__all__ = list(_new.__all__)
