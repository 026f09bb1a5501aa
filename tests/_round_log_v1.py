"""Round logs of schema version 1, as labkit wrote them before ties (for the migration tests).

``V1_SCHEMA`` is the table layout of version 1, verbatim from labkit/store.py before version 2.
:func:`copy_as_version_1` writes a version 1 file holding the sessions and rounds of a log made
by today's code (which must hold no ties and no none_better answers, which version 1 cannot
say), so a test can make the content with a real Session and still open a genuine old file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

V1_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE labkit_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE sessions (
        session_id    TEXT PRIMARY KEY,
        created_utc   TEXT NOT NULL,
        created_epoch REAL NOT NULL,
        meta          TEXT NOT NULL              -- JSON object
    )""",
    """CREATE TABLE rounds (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id       TEXT NOT NULL REFERENCES sessions(session_id),
        round            INTEGER NOT NULL CHECK (round >= 0),
        time_utc         TEXT NOT NULL,
        time_epoch       REAL NOT NULL,
        rater            TEXT,
        seed             TEXT,                   -- decimal: torch seeds reach 2**64 - 1
        kind             TEXT NOT NULL,
        m                INTEGER NOT NULL CHECK (m >= 1),
        ranking          TEXT NOT NULL,          -- JSON list of row indices, best first
        candidates       BLOB,                   -- safetensors bytes, tensor "candidates"
        candidates_dtype TEXT,
        candidates_shape TEXT,                   -- JSON list
        undone           INTEGER NOT NULL DEFAULT 0 CHECK (undone IN (0, 1)),
        undone_utc       TEXT,
        meta             TEXT NOT NULL           -- JSON object
    )""",
    # At most one live row per (session, round); undone rows may repeat the number.
    "CREATE UNIQUE INDEX rounds_live_round ON rounds(session_id, round) WHERE undone = 0",
    "CREATE INDEX rounds_session_seq ON rounds(session_id, seq)",
)

_V1_ROUND_COLUMNS = (
    "seq, session_id, round, time_utc, time_epoch, rater, seed, kind, m, ranking, candidates, "
    "candidates_dtype, candidates_shape, undone, undone_utc, meta"
)


def create_version_1(path: Path) -> None:
    """An empty version 1 log at ``path``, as labkit made one before version 2."""
    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("BEGIN")
        for statement in V1_SCHEMA:
            c.execute(statement)
        c.execute("PRAGMA application_id=0x4C424B54")
        c.executemany(
            "INSERT INTO labkit_meta(key, value) VALUES (?, ?)",
            [
                ("format", "labkit.round_log"),
                ("schema_version", "1"),
                ("created_utc", "2024-01-01T00:00:00+00:00"),
            ],
        )
        c.execute("COMMIT")
        c.execute("PRAGMA journal_mode=WAL")
    finally:
        c.close()


def copy_as_version_1(source: Path, path: Path) -> None:
    """Write the sessions and rounds of the log at ``source`` into a new version 1 log."""
    create_version_1(path)
    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("ATTACH DATABASE ? AS src", (str(source),))
        (extra,) = c.execute(
            "SELECT COUNT(*) FROM src.rounds WHERE ties != '[]' OR answer != 'ranking'"
        ).fetchone()
        assert extra == 0, "a version 1 log cannot hold ties or none_better answers"
        c.execute("BEGIN")
        c.execute("INSERT INTO sessions SELECT * FROM src.sessions")
        c.execute(
            f"INSERT INTO rounds({_V1_ROUND_COLUMNS}) SELECT {_V1_ROUND_COLUMNS} FROM src.rounds"
        )
        c.execute("COMMIT")
        c.execute("DETACH DATABASE src")
    finally:
        c.close()
