"""A throwaway PostgreSQL server for the tests of the round log in PostgreSQL.

:func:`postgres_server` runs ``initdb`` in a fresh temporary folder, starts ``postgres`` on a free
127.0.0.1 port with its socket in that folder, and at the end stops it and deletes the folder.
Debian puts the server binaries in ``/usr/lib/postgresql/<version>/bin``, not on PATH, so both
are searched. ``initdb`` refuses to run as root: as root the server runs as the ``postgres``
system user (Debian's package makes it) or else ``nobody``, which then owns the folder.

The cluster trades durability for speed (``fsync=off``: nothing here survives a power cut, and
nothing needs to) and sets ``synchronous_commit=off`` as the server's default, so a test can see
that the round log turns it on for its own connection.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from labkit.bench._server import free_port

#: The superuser initdb creates; trust authentication, so any password (or none) is accepted.
USER = "labkit"

_INITDB = ("-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
_SETTINGS = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=60")


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found is not None:
        folder = Path(found).resolve().parent
        if (folder / "postgres").exists():
            return folder
    versions = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    versions.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else -1)
    return versions[-1] if versions else None


def _run_as() -> dict[str, Any]:
    """subprocess arguments that drop root to an unprivileged user (initdb refuses root)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class PostgresServer:
    """A running throwaway server; :meth:`fresh_log_url` hands out empty places for logs."""

    port: int
    folder: Path
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _database: str | None = None

    def url(self, database: str = "postgres", *, password: str | None = None, **params: str) -> str:
        auth = USER if password is None else f"{USER}:{quote(password, safe='')}"
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def fresh_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"labkit_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def fresh_log_url(self, *, password: str | None = None, **params: str) -> str:
        """The URL of a new, empty schema (cheaper than a database) in one shared test database."""
        if self._database is None:
            self._database = f"labkit_{next(self._names)}"
            self.execute(f"CREATE DATABASE {self._database}")
        schema = f"log_{next(self._names)}"
        self.execute(f"CREATE SCHEMA {schema}", self._database)
        return self.url(
            self._database, password=password, options=f"-csearch_path={schema}", **params
        )


@contextlib.contextmanager
def postgres_server(bin_dir: Path) -> Iterator[PostgresServer]:
    """Start a fresh cluster from ``bin_dir``'s binaries; stop it and delete it on exit."""
    import psycopg

    run_as = _run_as()
    # Under /tmp itself: pytest's own temporary folders are private to root, so the server's
    # user could not reach a folder inside them.
    folder = Path(tempfile.mkdtemp(prefix="labkit-pg-", dir="/tmp" if run_as else None))
    proc: subprocess.Popen[bytes] | None = None
    try:
        if run_as:
            os.chown(folder, run_as["user"], run_as["group"])
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", USER, *_INITDB],
            check=True,
            capture_output=True,
            **run_as,
        )
        for _attempt in range(3):  # a free port may be taken again before postgres binds it
            port = free_port()
            log = (folder / "server.log").open("ab")
            proc = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    *("-D", str(folder / "data"), "-p", str(port), "-h", "127.0.0.1"),
                    *("-k", str(folder), *_SETTINGS),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **run_as,
            )
            log.close()
            server = PostgresServer(port=port, folder=folder)
            deadline = time.monotonic() + 60.0
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    psycopg.connect(server.url(), connect_timeout=2).close()
                    break
                except psycopg.OperationalError:
                    time.sleep(0.1)
            if proc.poll() is None:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"postgres did not answer within 60 s on port {port}")
                yield server
                return
            proc = None
        raise RuntimeError(
            "postgres would not start:\n" + (folder / "server.log").read_text(errors="replace")
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends the sessions still open
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
