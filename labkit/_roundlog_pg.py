"""The round log in PostgreSQL: the back end of :class:`labkit.roundlog.RoundLog` for a URL.

``RoundLog("postgresql://ada@db.lab:5432/labkit")`` keeps the log in that database, in its current
schema (the first existing one on the ``search_path``, normally ``public``; a URL parameter
``options=-csearch_path%3Dother`` picks another), so several app servers write one log. The
contract is the one in :mod:`labkit.roundlog`; this module holds only what differs from SQLite:

* **Types.** ``seq`` is ``BIGINT GENERATED ALWAYS AS IDENTITY``, ``round`` and ``m`` are
  ``BIGINT`` (SQLite's integers are 64-bit), times ``DOUBLE PRECISION``, candidates ``BYTEA``;
  ``sessions`` gets an explicit ``rowid`` identity (SQLite's is implicit) to order sessions
  created in the same instant. The CHECK constraints, the partial unique index
  ``rounds_live_round ... WHERE undone = 0`` and ``labkit_meta`` are the same. PostgreSQL has no
  application-id header: ``labkit_meta``'s format name alone marks a labkit log.

* **Durable when append returns.** Each connection sets ``synchronous_commit = on``, whatever the
  server's default: COMMIT returns only once the transaction's WAL record is flushed to the
  server's disk (and, where synchronous replication is configured, to the standbys it names). A
  server run with ``fsync = off`` promises nothing across a crash, whatever a client sets.

* **Several writers.** A write transaction that checks before it writes (append, undo) first
  takes a transaction-scoped advisory lock named by its session id, the counterpart of SQLite's
  ``BEGIN IMMEDIATE`` at the grain of one session: writers of different sessions never wait for
  each other, and "round 5 is free" or "round 5 is the last" still holds at COMMIT. The database
  itself has the last word: the partial unique index refuses a second live row for a round even
  from a writer that never took the lock, and append turns that refusal into the same
  ``ValueError`` as its own check. ``busy_timeout`` becomes the connection's ``lock_timeout``
  (a lock not granted in time raises ``psycopg.errors.LockNotAvailable``). Creating or migrating
  the schema takes a lock of its own, so two servers opening a new database at once make one
  schema.

* **Sequence numbers.** ``seq`` comes from an identity sequence: unique and never reused, and in
  append order within a session (its writers are serialized). Across sessions it is the order
  the INSERTs ran in, which two sessions committing at once may invert, and a rolled-back
  INSERT leaves a gap. Replay reads one session in ``seq`` order, which is exact.

* **Connections.** One connection per :class:`RoundLog`, in autocommit mode, with every
  transaction opened and closed explicitly. When the server dropped it (a restart, an idle
  timeout), the next statement that starts outside a transaction (a read, or the BEGIN of a
  write) connects again and runs once more: nothing had been written. A connection lost during a
  write's COMMIT leaves the outcome unknown to the client (the error says so, as
  ``psycopg.OperationalError``); reading the session back tells.

* **Secrets.** A password in the URL (``user:password@`` or ``password=``) is handed to libpq and
  nowhere else: the log is named by :func:`labkit.roundlog.redact_url` in ``repr`` and messages, a
  connection error has any password in it masked, and nothing about the connection is written
  into the log. libpq also reads ``PGPASSWORD`` and ``~/.pgpass``, which keep a password out of
  the URL altogether.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.pq import TransactionStatus
except ImportError as err:  # pragma: no cover - the postgres extra is part of dev
    raise ImportError(
        "a round log in PostgreSQL needs psycopg 3: pip install 'labkit[postgres]'"
    ) from err

from labkit._log_target import redact_url
from labkit.roundlog import _APPLICATION_ID, _LIVE_ROUND_INDEX, _Cursor

__all__ = ["Postgres"]

T = TypeVar("T")

# Connection parameters a URL may set itself; these apply where it does not.
_DEFAULTS = {"connect_timeout": "10", "application_name": "labkit"}

_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"  # one snapshot for several SELECTs


def _passwords(url: str) -> list[str]:
    """Every spelling of a password the URL carries (raw and percent-decoded), longest first."""
    parts = urlsplit(url)
    found = [parts.password or ""]
    found += [
        value
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key.lower() in ("password", "sslpassword")
    ]
    spellings = {s for p in found for s in (p, unquote(p)) if s}
    return sorted(spellings, key=len, reverse=True)


def _lock_key(name: str) -> int:
    """A signed 32-bit key for ``name`` (CRC-32): a collision only makes two writers queue."""
    k = zlib.crc32(name.encode("utf-8"))
    return k - (1 << 32) if k >= 1 << 31 else k


class Postgres:
    """A log in a PostgreSQL database (see the module docstring); used by :class:`RoundLog`."""

    types: Mapping[str, str] = {
        "rowid": "rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,\n        ",
        "seq": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",
        "blob": "BYTEA",
    }

    def __init__(self, url: str, *, busy_timeout: float) -> None:
        self.where = redact_url(url)
        self.kind = "a PostgreSQL schema"
        self._url = url
        self._secrets = _passwords(url)
        # lock_timeout 0 means "wait forever" in PostgreSQL; busy_timeout 0 means "do not wait".
        self._lock_timeout = f"{max(1, round(busy_timeout * 1000))}ms"
        self._conn = self._connect()

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            given = conninfo_to_dict(self._url)
            extra = {k: v for k, v in _DEFAULTS.items() if k not in given}
            conn = psycopg.connect(make_conninfo(self._url, **extra), autocommit=True)
        except psycopg.Error as err:
            # "from None": the original exception may quote the URL, password and all.
            raise ValueError(
                f"cannot open round log {self.where!r}: {self._scrub(str(err))}"
            ) from None
        try:
            # Settings of this connection only: nothing is written to the database.
            conn.execute("SET synchronous_commit = on")
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (self._lock_timeout,))
            row = conn.execute("SELECT current_schema()").fetchone()
        except BaseException:
            conn.close()
            raise
        if row is None or row[0] is None:
            conn.close()
            raise ValueError(
                f"cannot open round log {self.where!r}: no schema on its search_path exists to "
                f"hold the log's tables"
            )
        self.kind = f"the PostgreSQL schema {row[0]!r}"
        return conn

    def _in_transaction(self) -> bool:
        status = self._conn.info.transaction_status
        return status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)

    def _again_if_dropped(self, action: Callable[[], T]) -> T:
        """Run ``action`` (a read, or BEGIN: outside any transaction); if the server had dropped
        the connection, connect again and run it once more (nothing was written)."""
        try:
            return action()
        except psycopg.OperationalError:
            if not self._conn.broken:
                raise
        self._conn.close()
        self._conn = self._connect()
        return action()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        # The one difference in the SQL text itself: psycopg's placeholder is %s, not ?.
        assert "%" not in sql, f"a literal % would be read as a placeholder: {sql}"
        query = sql.replace("?", "%s")
        args = tuple(params) or None
        if self._in_transaction():
            return self._conn.execute(query, args)
        return self._again_if_dropped(lambda: self._conn.execute(query, args))

    def insert_round(self, sql: str, params: Sequence[Any]) -> int | None:
        # In a savepoint: PostgreSQL aborts the whole transaction on an error, and append still
        # needs it to name the row that won the round.
        self.execute("SAVEPOINT labkit_insert_round")
        try:
            row = self.execute(f"{sql} RETURNING seq", params).fetchone()
        except pg_errors.UniqueViolation as err:
            if err.diag.constraint_name != _LIVE_ROUND_INDEX:
                raise
            self.execute("ROLLBACK TO SAVEPOINT labkit_insert_round")
            return None
        self.execute("RELEASE SAVEPOINT labkit_insert_round")
        assert row is not None  # INSERT ... RETURNING returns the row it inserted
        return int(row[0])

    def begin(self, *, write: bool, lock: str | None = None) -> None:
        self.execute("BEGIN" if write else _READ)
        if write and lock is not None:
            try:
                # Released by COMMIT or ROLLBACK. Keys: labkit's application id and the lock's
                # name; the two-integer form keeps clear of other programs' single-key locks.
                self.execute(
                    "SELECT pg_advisory_xact_lock(?::integer, ?::integer)",
                    (_APPLICATION_ID, _lock_key(lock)),
                )
            except BaseException:
                self.rollback()
                raise

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if not self._in_transaction():
            return
        # A connection that broke meanwhile has had its transaction rolled back by the server;
        # the error that brought us here is the one to report.
        with contextlib.suppress(psycopg.OperationalError):
            self._conn.execute("ROLLBACK")

    def inspect(self) -> tuple[set[str], int | None]:
        rows = self.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
        return {str(r[0]) for r in rows}, None

    def configure(self) -> None:
        """Nothing to store: the connection's settings were made when it opened."""

    def stamp(self) -> None:
        """Nothing to stamp: PostgreSQL has no application id; labkit_meta marks the log."""

    def close(self) -> None:
        self._conn.close()
