"""The append-only round log: one row per round, written before the optimizer is told.

```
log = RoundLog("runs.labkit")                    # creates the schema, or opens an existing log
# or RoundLog("postgresql://ada@db.lab/labkit")  # one log shared by several servers
sid = log.new_session(meta={"optimizer": "ZORankSGD", "seed": 0})
X = opt.ask()
row = log.append(sid, round=0, ranking=r, m=X.shape[0], rater="ada", seed=round_seed)
opt.tell(row.ranking)                            # only after the row is committed
for rnd in log.rounds(sid):                      # replay: undone rounds are skipped
    ...
log.mark_undone(sid, 0)                          # undo never deletes; the row stays, flagged
```

The log is the truth: a session resumes by replaying it into a fresh optimizer. So a ranking that
a person submitted must never be lost, and nothing is ever deleted. It lives in an SQLite file
(the embedded default: no server) or, given a ``postgresql://`` URL, in a PostgreSQL database that
several app servers share. Both keep every promise below with the same schema and the same
checks; what differs (column types, locking, durability settings, connections) is written once
in a small back-end object, ``_SQLite`` here and :class:`labkit._roundlog_pg.Postgres`, whose module
docstring says how PostgreSQL keeps each promise. The points below describe SQLite where the two
differ.

* **Append-only.** Rows are only inserted. Undo sets a flag (and its time) on the row; replay
  skips flagged rows. A round number can therefore occur several times in a session — at most
  once *live* (not undone), which a partial unique index on ``(session_id, round) WHERE undone = 0``
  enforces inside the database, so even two processes racing for the same round cannot both win;
  the loser's append raises ``ValueError`` ("already has a live round"). Each row also gets
  ``seq``, an ``INTEGER PRIMARY KEY AUTOINCREMENT``: strictly increasing in append order across
  the whole file and never reused, so the redo of an undone round is a distinct row. (In
  PostgreSQL an identity column: increasing in append order within a session.)

* **Durable before the optimizer hears of it.** :meth:`RoundLog.append` returns only after its
  transaction has committed, and returns the :class:`Round` it wrote; when it raises, nothing
  was written. So its outcome alone says whether a ranking was taken: a caller never reads the
  file back to find out. (One exception in PostgreSQL: a connection lost during COMMIT leaves the
  client unsure, and reading the session back tells.) The file is in WAL mode with
  ``synchronous=FULL``:

  - In WAL mode a commit appends the transaction's pages to the ``-wal`` file with ``write()``.
    Once ``write()`` has returned the bytes belong to the operating system's page cache, which
    does not care whether the writing process lives on: a ``SIGKILL`` right after ``append``
    returns (or at any point inside it) loses nothing that was committed, and an interrupted
    transaction is simply not there on the next open. ``synchronous=NORMAL`` already gives this.
  - What ``NORMAL`` does not give is survival of a *power loss or kernel crash*: it fsyncs the WAL
    only at checkpoints, so the last few commits may live only in the page cache. ``FULL`` fsyncs
    the WAL at every commit, so a returned ``append`` is on the disk. Its price is one fsync per
    append: measured on the development VM, 0.40 ms per append with FULL against 0.07 ms with
    NORMAL (300 small appends); a slow disk may take ~10 ms. A person needs seconds per round, so
    "no submitted ranking is ever lost" is worth it and the log uses ``FULL``.
  - In PostgreSQL the log's connection sets ``synchronous_commit = on``: COMMIT returns after the
    server has flushed the transaction's WAL to its disk.

* **Several writers.** Sessions share a file under different ids, and two processes may append at
  once. Every write is a ``BEGIN IMMEDIATE`` transaction (it takes the write lock up front, so a
  read-then-write check such as "this round is not taken yet" cannot interleave with another
  writer), and the connection waits up to ``busy_timeout`` seconds for the lock instead of failing.
  In PostgreSQL a write that checks first takes an advisory lock of its session instead, so only
  writers of the same session wait for each other.

* **Private.** A new log file is created with mode 0600 (owner only); SQLite creates its
  ``-wal`` and ``-shm`` files with the same mode. An existing file keeps the mode it has. A
  PostgreSQL log is as private as the database's roles make it; the password in its URL is used
  to connect and nowhere else (:func:`redact_url` names the log in ``repr`` and messages).

* **Threads.** One connection per :class:`RoundLog`, opened with ``check_same_thread=False`` and
  guarded by a lock, because widget callbacks may arrive on another thread than the kernel's.

* **The answer.** A row holds the whole answer a person gave: the ranking, its ``ties``
  (positions p where ``ranking[p]`` is as good as ``ranking[p − 1]``, a JSON list; see
  :func:`labkit.ranking.validate_ties`) and the ``answer`` kind: ``"ranking"``, or
  ``"none_better"`` for "none of these is better than the current one", whose ranking is the
  single row of the round's incumbent. A replay tells the optimizer the ranking and its ties.

* **Schema versions.** ``labkit_meta`` names the file's schema version. Version 2 added the
  ``ties`` and ``answer`` columns. A version 1 file is migrated when it is opened (one
  transaction: the two columns are added with their defaults, ``[]`` and ``"ranking"``, which is
  what every version 1 round was, and the version is set to 2), so its rounds read and replay
  as before; a labkit that only knows version 1 then refuses the file rather than replay it
  without its ties. A file of a newer version than this labkit knows is refused, not guessed at.
  (The same holds for a PostgreSQL schema.)

Candidates (optional; the round seed normally suffices to regenerate them) are stored as
safetensors bytes, which keep dtype and shape exactly; they come back as CPU tensors.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import torch

from labkit._checks import check_int
from labkit._log_target import URL_RE, is_database_url, redact_url
from labkit.ranking import Ranking, Ties, validate_ranking, validate_ties

if TYPE_CHECKING:
    import pandas as pd
    from datasets import Dataset

__all__ = [
    "ANSWERS",
    "SCHEMA_VERSION",
    "Round",
    "RoundLog",
    "SessionRecord",
    "is_database_url",
    "redact_url",
]

#: Version of the table layout below. A log written by a newer labkit is refused, not guessed at.
#: 1: the first layout. 2: ``rounds.ties`` and ``rounds.answer`` (a version 1 file is migrated).
SCHEMA_VERSION = 2

#: The kinds of answer a round can hold: a ranking (with ties or not), or "none of these is
#: better than the current one" (then the ranking is the incumbent's row alone).
ANSWERS = ("ranking", "none_better")

#: Written into the ``labkit_meta`` table; its presence is what makes a file a labkit round log.
_FORMAT_NAME = "labkit.round_log"

#: SQLite's header field for "which application's file is this" (``PRAGMA application_id``):
#: the ASCII bytes "LBKT". Lets ``file(1)``-like tools and our own check tell the file apart.
_APPLICATION_ID = 0x4C424B54

# The layout, written once for both back ends: the few column types that differ between SQLite and
# PostgreSQL are filled in from the back end's ``types`` (see _SQLite.types and
# labkit._roundlog_pg.Postgres.types). One statement per entry (sqlite3's executescript would COMMIT
# first, escaping our transaction).
_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE labkit_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE sessions (
        {rowid}session_id    TEXT PRIMARY KEY,
        created_utc   TEXT NOT NULL,
        created_epoch {real} NOT NULL,
        meta          TEXT NOT NULL              -- JSON object
    )""",
    """CREATE TABLE rounds (
        seq              {seq},
        session_id       TEXT NOT NULL REFERENCES sessions(session_id),
        round            {int} NOT NULL CHECK (round >= 0),
        time_utc         TEXT NOT NULL,
        time_epoch       {real} NOT NULL,
        rater            TEXT,
        seed             TEXT,                   -- decimal: torch seeds reach 2**64 - 1
        kind             TEXT NOT NULL,
        m                {int} NOT NULL CHECK (m >= 1),
        ranking          TEXT NOT NULL,          -- JSON list of row indices, best first
        candidates       {blob},                   -- safetensors bytes, tensor "candidates"
        candidates_dtype TEXT,
        candidates_shape TEXT,                   -- JSON list
        undone           INTEGER NOT NULL DEFAULT 0 CHECK (undone IN (0, 1)),
        undone_utc       TEXT,
        meta             TEXT NOT NULL,          -- JSON object
        ties             TEXT NOT NULL DEFAULT '[]',  -- JSON list of tied positions (version 2)
        answer           TEXT NOT NULL DEFAULT 'ranking'
                         CHECK (answer IN ('ranking', 'none_better'))  -- (version 2)
    )""",
    # At most one live row per (session, round); undone rows may repeat the number.
    "CREATE UNIQUE INDEX rounds_live_round ON rounds(session_id, round) WHERE undone = 0",
    "CREATE INDEX rounds_session_seq ON rounds(session_id, seq)",
)

#: The name of the partial unique index above: a back end reports a row it refused by name.
_LIVE_ROUND_INDEX = "rounds_live_round"

# Version 1 -> 2: the same two columns as in _SCHEMA, added to an existing rounds table. Every
# version 1 round was a plain ranking without ties, which is what the defaults say.
_MIGRATE_1_TO_2: tuple[str, ...] = (
    "ALTER TABLE rounds ADD COLUMN ties TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE rounds ADD COLUMN answer TEXT NOT NULL DEFAULT 'ranking' "
    "CHECK (answer IN ('ranking', 'none_better'))",
)

# Columns read back into a Round, in this order.
_ROUND_COLUMNS = (
    "seq, session_id, round, time_utc, time_epoch, rater, seed, kind, m, ranking, ties, answer, "
    "candidates_dtype, candidates_shape, undone, undone_utc, meta"
)


# The exports' record of a round (_record): every Round field except the candidates themselves.
_EXPORT_COLUMNS = (
    "seq",
    "session_id",
    "round",
    "time_utc",
    "time_epoch",
    "rater",
    "seed",
    "kind",
    "m",
    "ranking",
    "ties",
    "answer",
    "undone",
    "undone_utc",
    "candidates_shape",
    "candidates_dtype",
    "meta",
)


@dataclass(frozen=True)
class Round:
    """One row of the round log.

    ``ties`` are the tied positions of ``ranking`` (``()``: none; see
    :func:`labkit.ranking.validate_ties`) and ``answer`` the kind of answer, ``"ranking"`` or
    ``"none_better"`` (see :data:`ANSWERS`); a replay tells the optimizer
    ``tell(ranking, ties=ties)``. ``candidates`` is the ``m × *shape`` candidate tensor on the CPU
    when it was stored and asked for, else ``None``; ``candidates_shape`` / ``candidates_dtype``
    describe it whenever it was stored (also when it was not loaded).
    """

    seq: int  # append order across the whole file; unique, never reused
    session_id: str
    round: int
    time_utc: str  # ISO 8601 with "+00:00"
    time_epoch: float  # seconds since 1970-01-01 UTC
    rater: str | None
    seed: int | None
    kind: str
    m: int
    ranking: Ranking
    undone: bool
    undone_utc: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    ties: Ties = ()
    answer: str = "ranking"
    candidates_shape: tuple[int, ...] | None = None
    candidates_dtype: str | None = None
    candidates: torch.Tensor | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SessionRecord:
    """A row of the sessions table: id (uuid4 hex), creation time and free-form JSON metadata."""

    session_id: str
    created_utc: str
    created_epoch: float
    meta: dict[str, Any] = field(default_factory=dict)


# -- validation helpers -----------------------------------------------------------------------


def _now() -> tuple[str, float]:
    """Wall time now as (UTC ISO 8601 string, epoch seconds), both from one reading."""
    epoch = time.time()
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(), epoch


def _meta_json(meta: Mapping[str, Any] | None, what: str) -> str:
    """Serialize free-form metadata as strict JSON (no NaN/Infinity), or raise ValueError."""
    if meta is None:
        return "{}"
    if not isinstance(meta, Mapping):
        raise ValueError(f"{what} must be a mapping (a JSON object) or None; got {meta!r}")
    bad_keys = [k for k in meta if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"{what} keys must be strings; got {bad_keys!r}")
    try:
        # allow_nan=False: NaN/Infinity are not JSON, and export_json must write valid JSON.
        return json.dumps(dict(meta), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON-serializable (finite numbers only): {err}") from err


def _check_session_id(session_id: Any) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise ValueError(f"session_id must be a non-empty string; got {session_id!r}")
    return session_id


def _create_owner_only(path: Path) -> None:
    """Create ``path`` as an empty file readable and writable by its owner only (0600).

    Does nothing when the file exists (its owner chose its mode). SQLite opens an empty file as a
    new database, and gives the ``-wal`` and ``-shm`` files it creates beside it the main file's
    permission bits, so the whole log is private to its owner: rankings say what a person
    preferred and who they are (``rater``).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask left
    finally:
        os.close(fd)


def _encode_candidates(candidates: Any, m: int) -> tuple[torch.Tensor, bytes, str, str]:
    """Candidates ``m × *shape`` (any device) -> (CPU copy, safetensors bytes, dtype, shape)."""
    # Imported here: only sessions that store candidates pay for it.
    from safetensors.torch import save

    if not isinstance(candidates, torch.Tensor):
        raise ValueError(
            f"candidates must be a torch.Tensor of shape (m, ...); got {type(candidates).__name__}"
        )
    if candidates.dim() < 1 or candidates.shape[0] != m:
        raise ValueError(
            f"candidates must have m={m} rows (shape (m, ...)); got shape {tuple(candidates.shape)}"
        )
    t = candidates.detach().to("cpu").contiguous().clone()
    blob = save({"candidates": t})
    return t, blob, str(t.dtype).removeprefix("torch."), json.dumps(list(t.shape))


def _decode_candidates(blob: bytes) -> torch.Tensor:
    from safetensors.torch import load

    return load(bytes(blob))["candidates"]


def _row_to_round(row: Sequence[Any], blob: bytes | None) -> Round:
    (seq, sid, rnd, t_utc, t_epoch, rater, seed, kind, m, ranking, ties, answer, c_dtype,
     c_shape, undone, undone_utc, meta) = row  # fmt: skip
    return Round(
        seq=int(seq),
        session_id=str(sid),
        round=int(rnd),
        time_utc=str(t_utc),
        time_epoch=float(t_epoch),
        rater=rater,
        seed=None if seed is None else int(seed),
        kind=str(kind),
        m=int(m),
        ranking=tuple(int(i) for i in json.loads(ranking)),
        undone=bool(undone),
        undone_utc=undone_utc,
        meta=json.loads(meta),
        ties=tuple(int(p) for p in json.loads(ties)),
        answer=str(answer),
        candidates_shape=None if c_shape is None else tuple(json.loads(c_shape)),
        candidates_dtype=c_dtype,
        candidates=None if blob is None else _decode_candidates(blob),
    )


# -- the exports' records ----------------------------------------------------------------------
# The three exports (to_dataframe, export_csv, export_json) write the same record of a round;
# only how a value is spelled differs, and each spelling is a small function of one value.

#: Fields whose value is a sequence; CSV and JSON write them as lists.
_SEQUENCE_FIELDS = frozenset({"ranking", "ties", "candidates_shape"})


def _record(r: Round) -> dict[str, Any]:
    """The exported fields of a round, in :data:`_EXPORT_COLUMNS` order, as the Round holds them."""
    return {name: getattr(r, name) for name in _EXPORT_COLUMNS}


def _csv_cell(name: str, value: Any) -> Any:
    """A CSV cell: JSON text for the sequences and ``meta``, ``""`` for None, 0/1 for ``undone``."""
    if name == "meta":
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    if name in _SEQUENCE_FIELDS:
        return json.dumps(list(value))
    if name == "time_epoch":
        return repr(value)
    if name == "undone":
        return int(value)
    return value


def _csv_cells(r: Round) -> list[Any]:
    return [_csv_cell(name, value) for name, value in _record(r).items()]


def _json_record(r: Round, *, candidates: bool) -> dict[str, Any]:
    """A round in the JSON export: its record less the session id (the enclosing session says
    it), sequences as lists, a seed that a double cannot hold exactly as a string, and with
    ``candidates`` the stored candidates as nested lists (``None``: none stored)."""
    item = _record(r)
    del item["session_id"]
    for name in _SEQUENCE_FIELDS:
        if item[name] is not None:
            item[name] = list(item[name])
    # As a string when it does not fit a double exactly (JSON readers use floats).
    if r.seed is not None and abs(r.seed) >= 2**53:
        item["seed"] = str(r.seed)
    if candidates:
        item["candidates"] = None if r.candidates is None else r.candidates.tolist()
    return item


# -- where the rows go -------------------------------------------------------------------------


class _Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class _Unreadable(Exception):
    """The back end cannot read what its target holds (a file that is not SQLite, say)."""


class _Backend(Protocol):
    """A database the log lives in: what differs between SQLite and PostgreSQL, and nothing more.

    The SQL itself is written once, in :class:`RoundLog`, with ``?`` placeholders; validation and
    messages live there too. A back end runs the statements, brackets them in transactions, names
    its column types (filled into ``_SCHEMA``) and how it marks a database as a labkit log.
    """

    #: How messages name the log: the file path, or the URL without its password.
    where: str
    #: What a target that holds something else is, for the refusal ("an SQLite database").
    kind: str
    #: The column types of ``_SCHEMA`` that differ between dialects.
    types: Mapping[str, str]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        """Run one statement (``?`` placeholders) and return its cursor."""
        ...

    def insert_round(self, sql: str, params: Sequence[Any]) -> int | None:
        """Run an ``INSERT INTO rounds`` inside the open transaction; return the row's ``seq``.

        None when the partial unique index (``_LIVE_ROUND_INDEX``) refused the row because
        another writer's live row for the round committed first; the transaction stays usable.
        """
        ...

    def begin(self, *, write: bool, lock: str | None = None) -> None:
        """Open a transaction. A read sees one snapshot. A write with ``lock`` also waits for,
        then excludes, every other writer holding the same ``lock`` (a session id, or
        ``_SCHEMA_LOCK``) until it ends, so its read-then-write checks hold at COMMIT."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None:
        """Undo the open transaction, if there is one (a no-op otherwise)."""
        ...

    def inspect(self) -> tuple[set[str], int | None]:
        """(tables, application id) of the target, reading only; the id is None where the
        database has no such header. Raises _Unreadable when it cannot be read at all."""
        ...

    def configure(self) -> None:
        """Settings made once the target is known to be a log (or empty); may write to it."""
        ...

    def stamp(self) -> None:
        """Mark a newly created log, inside the transaction that creates the schema."""
        ...

    def close(self) -> None: ...


#: The ``lock`` of writes that create or migrate the schema (sessions lock by their id).
_SCHEMA_LOCK = "labkit.round_log:schema"


class _SQLite:
    """A log in one SQLite file: the embedded default, which needs no server."""

    kind = "an SQLite database"
    types: Mapping[str, str] = {
        "rowid": "",  # sessions has SQLite's implicit rowid (sessions() sorts ties by it)
        "seq": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "int": "INTEGER",
        "real": "REAL",
        "blob": "BLOB",
    }

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        self.where = str(path)
        if path.is_dir():
            raise ValueError(f"a round log must be a file; {self.where!r} is a directory")
        if not path.parent.is_dir():
            raise ValueError(
                f"cannot create round log {self.where!r}: directory {str(path.parent)!r} does "
                f"not exist"
            )
        _create_owner_only(path)
        try:
            # isolation_level=None: the sqlite3 module issues no implicit BEGIN; every
            # transaction is opened by begin(), so transactions are exactly where the code says.
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise ValueError(f"cannot open round log {self.where!r}: {err}") from err

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        return self._conn.execute(sql, params)

    def insert_round(self, sql: str, params: Sequence[Any]) -> int | None:
        # Under BEGIN IMMEDIATE no other writer can take the round between append's check and
        # this INSERT, so the index never refuses a row here (if it did: IntegrityError).
        seq = self._conn.execute(sql, params).lastrowid
        assert seq is not None  # an INSERT into a rowid table always sets it
        return int(seq)

    def begin(self, *, write: bool, lock: str | None = None) -> None:
        # IMMEDIATE takes the file's one write lock at BEGIN (finer locks do not exist, so
        # ``lock`` needs nothing more): checks made inside the transaction still hold at COMMIT,
        # and a writer waits (busy timeout) at BEGIN instead of failing mid-way.
        self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def inspect(self) -> tuple[set[str], int | None]:
        try:
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                r[0]
                for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as err:  # "file is not a database", ...
            raise _Unreadable(f"SQLite cannot read it ({err})") from err
        return tables, int(app_id)

    def configure(self) -> None:
        # WAL: readers never block the writer and a commit is one append to the -wal file. The
        # mode is stored in the file; switching needs a moment of exclusive access, for which the
        # busy timeout waits if another process is opening the same new file right now.
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ValueError(
                f"round log {self.where!r} could not be switched to WAL mode (got {mode!r}); "
                f"is it on a file system without shared-memory support?"
            )
        # FULL: fsync the WAL at every commit (see the module docstring for why not NORMAL).
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def stamp(self) -> None:
        self._conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")

    def close(self) -> None:
        self._conn.close()


# -- the log ----------------------------------------------------------------------------------


class RoundLog:
    """An append-only log of ranking rounds, shared by any number of sessions.

    ``RoundLog(target)``: ``target`` is a file path (SQLite, the embedded default: no server) or
    the URL of a PostgreSQL database, ``postgresql://user@host:port/dbname`` (``postgres://``
    too; needs psycopg 3, the ``postgres`` extra). The log is created when the file, or the
    database's current schema, is new or empty, opened when it holds a labkit round log, and
    anything else is refused with ``ValueError`` (a file that is not SQLite, a database of another
    application, a log of a newer schema version). Any other ``scheme://`` is refused too.

    ``busy_timeout`` is how long, in seconds, a write waits for another process's transaction to
    finish before giving up: with ``sqlite3.OperationalError`` (SQLite's busy timeout) or
    ``psycopg.errors.LockNotAvailable`` (PostgreSQL's ``lock_timeout``).

    A password in the URL is used to connect and nowhere else: ``repr`` and every message name the
    log by the URL without it, and nothing is written into the log about where it lives.

    Use it as a context manager or call :meth:`close`. All methods may be called from any thread.
    """

    def __init__(self, target: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)):
            raise ValueError(f"busy_timeout must be a number of seconds; got {busy_timeout!r}")
        if not math.isfinite(busy_timeout) or busy_timeout < 0:
            raise ValueError(f"busy_timeout must be finite and >= 0 seconds; got {busy_timeout!r}")
        self._lock = threading.RLock()
        db: _Backend
        if is_database_url(target):
            # Imports psycopg: only PostgreSQL logs need it.
            from labkit._roundlog_pg import Postgres

            self._path: Path | None = None
            db = Postgres(str(target), busy_timeout=float(busy_timeout))
        elif isinstance(target, str) and URL_RE.match(target):
            raise ValueError(
                f"round log {redact_url(target)!r}: a round log is a file path or a "
                f"postgresql:// URL; this URL's scheme is neither"
            )
        else:
            self._path = Path(target).expanduser()  # "~/runs.sqlite" means the home folder
            db = _SQLite(self._path, busy_timeout=float(busy_timeout))
        self._where = db.where
        self._db: _Backend | None = db
        try:
            self._open()
        except BaseException:
            db.close()
            self._db = None
            raise

    # -- opening --------------------------------------------------------------------------------

    def _refuse(self, why: str) -> ValueError:
        return ValueError(f"{self._where!r} is not a labkit round log: {why}")

    def _existing_version(self) -> int | None:
        """The schema version of the labkit log the target holds, or None when it holds nothing.

        Raises ValueError for a target that holds something else, or a log of a newer version.
        Reads only: a foreign file must be left exactly as it was (not even switched to WAL).
        """
        db = self._backend()
        try:
            tables, app_id = db.inspect()
        except _Unreadable as err:
            raise self._refuse(str(err)) from err
        if not tables and not app_id:
            return None
        if "labkit_meta" not in tables:
            raise self._refuse(
                f"it is {db.kind} without a labkit_meta table (it has: {sorted(tables)})"
            )
        if app_id is not None and app_id != _APPLICATION_ID:
            raise self._refuse(
                f"its SQLite application_id is {app_id:#x}, a labkit log has {_APPLICATION_ID:#x}"
            )
        meta = dict(db.execute("SELECT key, value FROM labkit_meta").fetchall())
        if meta.get("format") != _FORMAT_NAME:
            raise self._refuse(f"labkit_meta names format {meta.get('format')!r}")
        try:
            version = int(meta["schema_version"])
        except (KeyError, ValueError) as err:
            raise self._refuse(
                f"bad schema_version {meta.get('schema_version')!r} in labkit_meta"
            ) from err
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"round log {self._where!r} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this labkit reads; upgrade labkit to open it"
            )
        if version < 1:
            raise self._refuse(f"schema_version {version} is not a labkit schema version")
        return version

    def _open(self) -> None:
        version = self._existing_version()
        self._backend().configure()
        if version == SCHEMA_VERSION:
            return
        if version is not None:
            self._migrate()
            return
        with self._write(lock=_SCHEMA_LOCK) as db:
            # Another process may have created the schema since we looked: check again under
            # the lock (which we now hold until COMMIT).
            if self._existing_version() is not None:
                self._migrate_in()
                return
            for statement in _SCHEMA:
                db.execute(statement.format(**db.types))
            db.stamp()
            created, _ = _now()
            for key, value in (
                ("format", _FORMAT_NAME),
                ("schema_version", str(SCHEMA_VERSION)),
                ("created_utc", created),
            ):
                db.execute("INSERT INTO labkit_meta(key, value) VALUES (?, ?)", (key, value))

    def _migrate(self) -> None:
        """Bring a log of an older schema version up to :data:`SCHEMA_VERSION`, all or nothing."""
        with self._write(lock=_SCHEMA_LOCK):
            self._migrate_in()

    def _migrate_in(self) -> None:
        # Read the version again under the lock: another process may have migrated the log
        # since we looked, and must not be migrated twice.
        version = self._existing_version()
        if version == 1:
            db = self._backend()
            for statement in _MIGRATE_1_TO_2:
                db.execute(statement)
            migrated, _ = _now()
            db.execute(
                "UPDATE labkit_meta SET value = ? WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION),),
            )
            db.execute("DELETE FROM labkit_meta WHERE key = 'migrated_utc'")
            db.execute(
                "INSERT INTO labkit_meta(key, value) VALUES ('migrated_utc', ?)", (migrated,)
            )

    # -- plumbing -------------------------------------------------------------------------------

    def _backend(self) -> _Backend:
        if self._db is None:
            raise ValueError(f"round log {self._where!r} is closed")
        return self._db

    @contextmanager
    def _write(self, *, lock: str | None = None) -> Iterator[_Backend]:
        """A write transaction under the thread lock; committed on normal exit.

        ``lock`` (a session id, or ``_SCHEMA_LOCK``) keeps other writers holding the same one out
        until COMMIT, so checks made inside the transaction still hold when it commits (see
        :meth:`_Backend.begin`).
        """
        with self._lock:
            db = self._backend()
            db.begin(write=True, lock=lock)
            try:
                yield db
                db.commit()
            except BaseException:
                # Nothing half-written stays: the whole transaction goes, including when COMMIT
                # itself failed (then the row is not in the log and append raised).
                db.rollback()
                raise

    @contextmanager
    def _read(self) -> Iterator[_Backend]:
        """A read transaction: several SELECTs see one snapshot of the log."""
        with self._lock:
            db = self._backend()
            db.begin(write=False)
            try:
                yield db
            finally:
                db.commit()

    @property
    def path(self) -> Path | None:
        """The log file; None for a log in PostgreSQL, which is no file (``repr`` names it)."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._db is None

    def close(self) -> None:
        """Close the connection (idempotent). Every returned append is already committed."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> RoundLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"RoundLog({self._where!r}, {state})"

    # -- sessions -------------------------------------------------------------------------------

    def new_session(self, *, meta: Mapping[str, Any] | None = None) -> str:
        """Register a new session and return its id (a uuid4 hex string).

        ``meta`` is free-form JSON (e.g. the optimizer's class, config and seed, the task's name)
        that a resume needs to rebuild the optimizer before replaying the rounds.
        """
        meta_json = _meta_json(meta, "session meta")
        sid = uuid.uuid4().hex
        created, epoch = _now()
        with self._write() as db:
            db.execute(
                "INSERT INTO sessions(session_id, created_utc, created_epoch, meta) "
                "VALUES (?, ?, ?, ?)",
                (sid, created, epoch, meta_json),
            )
        return sid

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read-only statement, under the lock: one statement reads a
        consistent snapshot without a transaction of its own (several use :meth:`_read`)."""
        with self._lock:
            return self._backend().execute(sql, params).fetchall()

    def sessions(self) -> list[str]:
        """Ids of all sessions in the file, oldest first."""
        rows = self._fetch("SELECT session_id FROM sessions ORDER BY created_epoch, rowid")
        return [r[0] for r in rows]

    def session(self, session_id: str) -> SessionRecord:
        """The sessions-table row of ``session_id``; ValueError if there is none."""
        sid = _check_session_id(session_id)
        rows = self._fetch(
            "SELECT session_id, created_utc, created_epoch, meta FROM sessions "
            "WHERE session_id = ?",
            (sid,),
        )
        if not rows:
            raise ValueError(f"no session {sid!r} in round log {self._where!r}")
        row = rows[0]
        return SessionRecord(
            session_id=row[0],
            created_utc=row[1],
            created_epoch=float(row[2]),
            meta=json.loads(row[3]),
        )

    def session_meta(self, session_id: str) -> dict[str, Any]:
        """The metadata given to :meth:`new_session` for ``session_id``."""
        return self.session(session_id).meta

    # -- rounds ---------------------------------------------------------------------------------

    def append(
        self,
        session_id: str,
        *,
        round: int,
        ranking: Sequence[int] | torch.Tensor,
        m: int,
        rater: str | None = None,
        seed: int | None = None,
        kind: str = "gradient",
        candidates: torch.Tensor | None = None,
        meta: Mapping[str, Any] | None = None,
        ties: Sequence[int] | torch.Tensor | None = None,
        answer: str = "ranking",
    ) -> Round:
        """Append one round; return the row as written, only once it is committed.

        ``ranking`` (row indices best first) is checked by :func:`labkit.ranking.validate_ranking`
        against ``m``, the number of candidates in the round, and its ``ties`` (tied positions,
        None for none) by :func:`labkit.ranking.validate_ties`. ``answer`` is ``"ranking"`` or
        ``"none_better"`` ("none of these is better than the current one"), whose ranking must be
        one row (the round's incumbent, which the caller knows) without ties. ``seed`` is the
        optimizer's seed for the round (any Python int; stored exactly), ``candidates``
        optionally the ``m × *shape`` tensor itself (any device; stored as safetensors bytes).
        ``kind`` names the round type, e.g. ``"gradient"`` or ``"line_search"``; ``meta`` is
        free-form JSON.

        The returned :class:`Round` equals what :meth:`rounds` reads back for it (its
        ``candidates``, when given, are the stored CPU copy), so a caller never re-reads the file
        to learn what it wrote. A return means "taken": the row is committed. An exception means
        "not taken": nothing was written (the transaction is rolled back, a failed ``COMMIT``
        included). Raises ValueError, and writes nothing, when an argument breaks its rule, when
        the session was never created with :meth:`new_session`, or when the session already has
        a live (not undone) row for ``round``; ``sqlite3.OperationalError`` when the write lock
        was not free within ``busy_timeout``.
        """
        sid = _check_session_id(session_id)
        rnd = check_int("round", round, minimum=0)
        m_ = check_int("m", m, minimum=1)
        r = validate_ranking(ranking, m_)
        t = validate_ties(ties, len(r))
        if not isinstance(answer, str) or answer not in ANSWERS:
            raise ValueError(f"answer must be one of {ANSWERS}; got {answer!r}")
        if answer == "none_better" and (len(r) != 1 or t):
            raise ValueError(
                f"a none_better answer is the ranking of the round's incumbent alone, without "
                f"ties; got ranking {list(r)} with ties {list(t)}"
            )
        if rater is not None and not isinstance(rater, str):
            raise ValueError(f"rater must be a string id or None; got {rater!r}")
        if seed is not None:
            seed_text: str | None = str(check_int("seed", seed))
        else:
            seed_text = None
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string such as 'gradient'; got {kind!r}")
        meta_json = _meta_json(meta, "round meta")
        blob: bytes | None = None
        c_dtype: str | None = None
        c_shape: str | None = None
        stored: torch.Tensor | None = None
        if candidates is not None:
            stored, blob, c_dtype, c_shape = _encode_candidates(candidates, m_)
        t_utc, t_epoch = _now()
        with self._write(lock=sid) as db:
            # Checked inside the transaction, which excludes the session's other writers, so the
            # messages are exact; the foreign key and the partial unique index would refuse
            # these rows anyway.
            if db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (sid,)).fetchone() is None:
                raise ValueError(
                    f"no session {sid!r} in round log {self._where!r}; create it with "
                    f"new_session() first"
                )
            self._check_round_free(db, sid, rnd)
            seq = db.insert_round(
                "INSERT INTO rounds(session_id, round, time_utc, time_epoch, rater, seed, kind, "
                "m, ranking, ties, answer, candidates, candidates_dtype, candidates_shape, "
                "undone, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    sid,
                    rnd,
                    t_utc,
                    t_epoch,
                    rater,
                    seed_text,
                    kind,
                    m_,
                    json.dumps(list(r)),
                    json.dumps(list(t)),
                    answer,
                    blob,
                    c_dtype,
                    c_shape,
                    meta_json,
                ),
            )
            if seq is None:
                # The unique index refused the row: a writer that does not take the session's
                # lock (another program, or raw SQL) committed a live row for the round after
                # our check. It decides; say so as the check would have.
                self._check_round_free(db, sid, rnd)
                raise ValueError(
                    f"session {sid!r} already has a live round {rnd}; round numbers are unique "
                    f"per session unless the earlier one is marked undone"
                )
        return Round(
            seq=int(seq),
            session_id=sid,
            round=rnd,
            time_utc=t_utc,
            time_epoch=t_epoch,
            rater=rater,
            seed=None if seed_text is None else int(seed_text),
            kind=kind,
            m=m_,
            ranking=r,
            undone=False,
            undone_utc=None,
            meta=json.loads(meta_json),  # as read back: JSON types (lists, not tuples)
            ties=t,
            answer=answer,
            candidates_shape=None if c_shape is None else tuple(json.loads(c_shape)),
            candidates_dtype=c_dtype,
            candidates=stored,
        )

    def _check_round_free(self, db: _Backend, sid: str, rnd: int) -> None:
        """Raise the ValueError of a taken round when the session has a live row for ``rnd``."""
        taken = db.execute(
            "SELECT seq FROM rounds WHERE session_id = ? AND round = ? AND undone = 0", (sid, rnd)
        ).fetchone()
        if taken is not None:
            raise ValueError(
                f"session {sid!r} already has a live round {rnd} (seq {taken[0]}); round "
                f"numbers are unique per session unless the earlier one is marked undone"
            )

    def mark_undone(self, session_id: str, round: int, *, last: bool = False) -> int:
        """Flag the live row of ``round`` in the session as undone; return that row's ``seq``.

        The row stays in the file (nothing is ever deleted); replay skips it and the round number
        becomes free for the redo. Undo from the end: with ``last=True`` (what a session uses)
        the row must be the session's last live round, checked in the same transaction, so a
        writer that fell behind (another process on the same session) cannot undo the wrong
        round; without it the log lets you undo an earlier round, but the later rounds were
        answered against the iterate it produced. Raises ValueError if the session has no live
        row for ``round`` (or, with ``last``, a later live one).
        """
        sid = _check_session_id(session_id)
        rnd = check_int("round", round, minimum=0)
        t_utc, _ = _now()
        with self._write(lock=sid) as db:
            row = db.execute(
                "SELECT seq FROM rounds WHERE session_id = ? AND round = ? AND undone = 0",
                (sid, rnd),
            ).fetchone()
            if row is None:
                raise ValueError(
                    f"session {sid!r} has no live round {rnd} to undo in {self._where!r}"
                )
            if last:
                (top,) = db.execute(
                    "SELECT MAX(round) FROM rounds WHERE session_id = ? AND undone = 0", (sid,)
                ).fetchone()
                if top != rnd:
                    raise ValueError(
                        f"round {rnd} is not the last live round of session {sid!r}: the log "
                        f"{self._where!r} has rounds up to {top} (written by another "
                        f"process or Session on the same session?); nothing was undone"
                    )
            db.execute(
                "UPDATE rounds SET undone = 1, undone_utc = ? WHERE seq = ?", (t_utc, row[0])
            )
        return int(row[0])

    def next_round(self, session_id: str) -> int:
        """One more than the highest live round number of the session (0 for none)."""
        sid = _check_session_id(session_id)
        (top,) = self._fetch(
            "SELECT MAX(round) FROM rounds WHERE session_id = ? AND undone = 0", (sid,)
        )[0]
        return 0 if top is None else int(top) + 1

    def rounds(
        self,
        session_id: str,
        *,
        include_undone: bool = False,
        with_candidates: bool = True,
    ) -> list[Round]:
        """The session's rounds in append order (``seq``): the order to replay them in.

        Undone rows are left out unless ``include_undone``; stored candidates are loaded (as CPU
        tensors) unless ``with_candidates=False``. An unknown session id is a ValueError.
        """
        sid = _check_session_id(session_id)
        with self._read() as db:
            if db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (sid,)).fetchone() is None:
                raise ValueError(f"no session {sid!r} in round log {self._where!r}")
            where = "session_id = ?" + ("" if include_undone else " AND undone = 0")
            blob_col = "candidates" if with_candidates else "NULL"
            rows = db.execute(
                f"SELECT {_ROUND_COLUMNS}, {blob_col} FROM rounds WHERE {where} ORDER BY seq",
                (sid,),
            ).fetchall()
        return [_row_to_round(row[:-1], row[-1]) for row in rows]

    def _all_rounds(self, session_id: str | None, *, include_undone: bool) -> list[Round]:
        if session_id is not None:
            return self.rounds(session_id, include_undone=include_undone, with_candidates=False)
        where = "" if include_undone else " WHERE undone = 0"
        rows = self._fetch(f"SELECT {_ROUND_COLUMNS} FROM rounds{where} ORDER BY seq")
        return [_row_to_round(row, None) for row in rows]

    # -- exports --------------------------------------------------------------------------------

    def to_dataframe(
        self, session_id: str | None = None, *, include_undone: bool = True
    ) -> pd.DataFrame:
        """The rounds as a pandas DataFrame, one row per log row, in ``seq`` order.

        All sessions when ``session_id`` is None. Undone rows are included by default (with
        ``undone=True``) because an export shows the whole log; candidates are not included (their
        shape and dtype are). ``ranking`` and ``ties`` hold tuples, ``answer`` strings
        (``"ranking"`` or ``"none_better"``), ``meta`` dicts, ``time_utc`` tz-aware
        timestamps; ``seed`` is an object column of Python ints (seeds may exceed int64).
        """
        import pandas as pd

        rounds = self._all_rounds(session_id, include_undone=include_undone)
        records = [_record(r) for r in rounds]
        df = pd.DataFrame.from_records(records, columns=list(_EXPORT_COLUMNS))
        df["time_utc"] = pd.to_datetime(df["time_utc"], utc=True, format="ISO8601")
        df["seed"] = df["seed"].astype(object)
        df["undone"] = df["undone"].astype(bool)
        return df

    def to_dataset(self, **options: Any) -> Dataset:
        """The live rounds (undone ones left out) as a Hugging Face ``datasets.Dataset``.

        Pairs (``chosen``/``rejected``), rankings or raters, optionally with images:
        ``log.to_dataset(**options)`` is :func:`labkit.dataset.to_dataset` ``(log, **options)``,
        whose keyword options (``sessions``, ``shape``, ``images``, ``render``, ``replay``,
        ``include_consensus``, ``include_late``) are declared and checked there, once.
        """
        from labkit.dataset import to_dataset  # imports `datasets` only when called

        return to_dataset(self, **options)

    def export_csv(
        self,
        path: str | os.PathLike[str],
        *,
        session_id: str | None = None,
        include_undone: bool = True,
    ) -> Path:
        """Write the rounds to a CSV file (one row per log row); return its path.

        ``ranking``, ``ties``, ``candidates_shape`` and ``meta`` are JSON strings in their cells;
        ``answer`` is ``ranking`` or ``none_better``; candidates
        themselves are not exported (use :meth:`export_json` with ``include_candidates=True``).
        """
        out = Path(path)
        rounds = self._all_rounds(session_id, include_undone=include_undone)
        with out.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(_EXPORT_COLUMNS)
            w.writerows(_csv_cells(r) for r in rounds)
        return out

    def export_json(
        self,
        path: str | os.PathLike[str],
        *,
        session_id: str | None = None,
        include_undone: bool = True,
        include_candidates: bool = False,
    ) -> Path:
        """Write sessions and their rounds to one JSON document; return its path.

        Layout: ``{"format", "schema_version", "sessions": [{"session_id", "created_utc",
        "created_epoch", "meta", "rounds": [...]}]}`` with rounds in ``seq`` order. With
        ``include_candidates`` each round that stored candidates carries them as nested lists of
        numbers (values converted to float or int; dtype and shape given beside them).
        """
        out = Path(path)
        ids = self.sessions() if session_id is None else [_check_session_id(session_id)]
        doc_sessions: list[dict[str, Any]] = []
        for sid in ids:
            rec = self.session(sid)
            rounds = self.rounds(
                sid, include_undone=include_undone, with_candidates=include_candidates
            )
            doc_rounds = [_json_record(r, candidates=include_candidates) for r in rounds]
            doc_sessions.append(
                {
                    "session_id": rec.session_id,
                    "created_utc": rec.created_utc,
                    "created_epoch": rec.created_epoch,
                    "meta": rec.meta,
                    "rounds": doc_rounds,
                }
            )
        doc = {"format": _FORMAT_NAME, "schema_version": SCHEMA_VERSION, "sessions": doc_sessions}
        try:
            text = json.dumps(doc, indent=1, allow_nan=False)
        except ValueError as err:
            raise ValueError(
                f"cannot export to JSON: stored candidates hold NaN or Infinity ({err}); "
                f"export without include_candidates"
            ) from err
        out.write_text(text, encoding="utf-8")
        return out
