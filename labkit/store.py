"""The old name of :mod:`labkit.roundlog` (the round log), kept working for a release.

Import from ``labkit.roundlog``; this module re-exports its public names and nothing else.
"""

from labkit.roundlog import (
    ANSWERS,
    SCHEMA_VERSION,
    Round,
    RoundLog,
    SessionRecord,
    is_database_url,
    redact_url,
)

__all__ = [
    "ANSWERS",
    "SCHEMA_VERSION",
    "Round",
    "RoundLog",
    "SessionRecord",
    "is_database_url",
    "redact_url",
]
