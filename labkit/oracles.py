"""The old name of :mod:`labkit.judges` (the machine judges), kept working for a release.

Import from ``labkit.judges``; this module re-exports its public names and nothing else.
"""

from labkit import judges as _new
from labkit.judges import *  # noqa: F403 - exactly judges' __all__

__all__ = list(_new.__all__)
