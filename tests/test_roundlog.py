"""Tests of labkit.roundlog: the append-only round log, in SQLite and in PostgreSQL.

The contract tests take the ``log`` (or ``new_target``) fixture and run on both back ends: a file,
and a fresh schema on a throwaway PostgreSQL server (tests/_postgres.py). Tests of what only one
back end has (file modes, WAL, a version 1 file; advisory locks, reconnection, URLs) say so in
their names.

Besides the API, four things are checked with real (forked) processes: two writers appending at
once lose nothing; several writers racing for the same rounds get exactly one live row each; a
writer SIGKILLed at random points loses no append that had returned and leaves a log that opens
(and, for a file, passes ``PRAGMA integrity_check``); a writer killed while creating the log
leaves one that the next open initialises. Fork, not fresh interpreters: importing torch takes
seconds, and these tests start dozens of writers.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import random
import signal
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit import roundlog as roundlog_module
from labkit.roundlog import SCHEMA_VERSION, Round, RoundLog, is_database_url
from tests._postgres import PostgresServer
from tests._round_log_v1 import copy_as_version_1, create_version_1

try:
    import psycopg
except ImportError:  # the postgres fixture skips (or, under CI, fails) the PostgreSQL tests
    psycopg = None  # type: ignore[assignment]

Target = str | Path  # a file path, or a postgresql:// URL

#: What a database raises when a raw write breaks a constraint, whichever back end.
_INTEGRITY: tuple[type[Exception], ...] = (sqlite3.IntegrityError,) + (
    (psycopg.IntegrityError,) if psycopg is not None else ()
)


@pytest.fixture(params=["sqlite", "postgresql"])
def new_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Target]:
    """Hands out places for new, empty logs: files in tmp_path, or fresh PostgreSQL schemas."""
    if request.param == "sqlite":
        names = itertools.count()
        return lambda: tmp_path / f"log{next(names)}.labkit"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.fresh_log_url


# Where each log under test lives, so a test can reach the database behind its back.
_TARGETS: weakref.WeakKeyDictionary[RoundLog, Target] = weakref.WeakKeyDictionary()


def _open(target: Target, **kwargs: Any) -> RoundLog:
    lg = RoundLog(target, **kwargs)
    _TARGETS[lg] = target
    return lg


@pytest.fixture
def log(new_target: Callable[[], Target]) -> Iterator[RoundLog]:
    with _open(new_target()) as lg:
        yield lg


def _sql(where: RoundLog | Target, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement (``?`` placeholders) on a connection of its own, committed; its rows."""
    target = _TARGETS[where] if isinstance(where, RoundLog) else where
    if is_database_url(target):
        with psycopg.connect(target, autocommit=True) as pc:
            cur = pc.execute(sql.replace("?", "%s"), params or None)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description is not None else []
    with closing(sqlite3.connect(target)) as c, c:
        return c.execute(sql, params).fetchall()


def _count_rows(where: RoundLog | Target) -> int:
    return int(_sql(where, "SELECT COUNT(*) FROM rounds")[0][0])


def _integrity(path: Path) -> str:
    c = sqlite3.connect(path)
    try:
        return str(c.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        c.close()


def _assert_healthy(target: Target) -> None:
    """A file passes SQLite's integrity check; in PostgreSQL the live-round index is valid."""
    if is_database_url(target):
        rows = _sql(target, "SELECT indisvalid FROM pg_index WHERE indexrelid = ?::regclass",
                    ("rounds_live_round",))  # fmt: skip
        assert rows == [(True,)]
    else:
        assert _integrity(Path(target)) == "ok"


# -- opening ----------------------------------------------------------------------------------


def test_new_file_gets_schema_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "new.labkit"
    with RoundLog(path) as lg:
        conn = lg._db._conn  # type: ignore[union-attr]
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # 2 == FULL: fsync of the WAL at every commit (see the module docstring).
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    c = sqlite3.connect(path)
    meta = dict(c.execute("SELECT key, value FROM labkit_meta").fetchall())
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    c.close()
    assert meta["format"] == "labkit.round_log"
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert {"labkit_meta", "sessions", "rounds"} <= tables


def test_new_log_and_its_wal_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.labkit"
    old_umask = os.umask(0o022)  # the common default, which would leave a new file 0644
    try:
        lg = RoundLog(path)
        sid = lg.new_session()
        lg.append(sid, round=0, ranking=[0], m=1)  # the -wal and -shm files exist while open
        modes = {
            suffix: (tmp_path / f"private.labkit{suffix}").stat().st_mode & 0o777
            for suffix in ("", "-wal", "-shm")
        }
        lg.close()
    finally:
        os.umask(old_umask)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    # An existing file keeps the mode its owner gave it.
    shared = tmp_path / "shared.labkit"
    shared.touch(mode=0o640)
    shared.chmod(0o640)
    RoundLog(shared).close()
    assert shared.stat().st_mode & 0o777 == 0o640


def test_reopen_keeps_everything(new_target: Callable[[], Target]) -> None:
    path = new_target()
    with RoundLog(path) as lg:
        sid = lg.new_session(meta={"task": "sphere"})
        lg.append(sid, round=0, ranking=[1, 0], m=2, seed=7)
    with RoundLog(path) as lg:
        assert lg.sessions() == [sid]
        assert lg.session_meta(sid) == {"task": "sphere"}
        (r,) = lg.rounds(sid)
        assert (r.round, r.ranking, r.m, r.seed) == (0, (1, 0), 2, 7)


def test_empty_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "empty.labkit"
    path.touch()
    with RoundLog(path) as lg:
        sid = lg.new_session()
        assert lg.sessions() == [sid]


def test_refuses_text_file_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    text = "these are my notes, not a database\n" * 20
    path.write_text(text)
    with pytest.raises(ValueError, match="is not a labkit round log"):
        RoundLog(path)
    assert path.read_text() == text


def test_refuses_foreign_sqlite_database_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE people (name TEXT)")
    c.commit()
    c.close()
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"without a labkit_meta table.*people"):
        RoundLog(path)
    # Not switched to WAL, nothing written: the other application's file is exactly as it was.
    assert path.read_bytes() == before
    assert not Path(str(path) + "-wal").exists()


def test_refuses_newer_schema_version(new_target: Callable[[], Target]) -> None:
    path = new_target()
    RoundLog(path).close()
    _sql(path, "UPDATE labkit_meta SET value = ? WHERE key = 'schema_version'", (str(99),))
    with pytest.raises(ValueError, match=rf"schema version 99, newer than the {SCHEMA_VERSION}"):
        RoundLog(path)


def _columns(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as c:
        return [row[1] for row in c.execute("PRAGMA table_info(rounds)")]


def _meta(path: Path) -> dict[str, str]:
    with closing(sqlite3.connect(path)) as c:
        return dict(c.execute("SELECT key, value FROM labkit_meta").fetchall())


def test_a_version_1_log_is_migrated_on_open_and_reads_as_before(tmp_path: Path) -> None:
    made = tmp_path / "made.labkit"
    with RoundLog(made) as lg:
        sid = lg.new_session(meta={"task": "sphere"})
        lg.append(sid, round=0, ranking=[2, 0], m=3, seed=5, rater="ada")
        lg.append(sid, round=1, ranking=[1], m=3, candidates=torch.arange(3.0))
        lg.mark_undone(sid, 1)
        lg.append(sid, round=1, ranking=[0, 1, 2], m=3)
        expected = lg.rounds(sid, include_undone=True)
    old = tmp_path / "old.labkit"
    copy_as_version_1(made, old)
    assert _meta(old)["schema_version"] == "1" and "ties" not in _columns(old)

    with RoundLog(old) as lg:
        assert lg.rounds(sid, include_undone=True) == expected  # ties (), answer "ranking"
        assert [r.candidates_shape for r in expected] == [None, (3,), None]
        lg.append(sid, round=2, ranking=[2, 1, 0], m=3, ties=[1])  # and takes ties from now on
        assert lg.rounds(sid)[-1].ties == (1,)
    meta = _meta(old)
    assert meta["schema_version"] == str(SCHEMA_VERSION) == "2" and "migrated_utc" in meta
    assert _columns(old) == _columns(made)  # the same layout as a file made as version 2
    assert _integrity(old) == "ok"
    with RoundLog(old) as lg:  # opened again: nothing left to migrate
        lg._migrate()  # (a second process that looked before the first migrated: a no-op)
        assert len(lg.rounds(sid)) == 3
    assert _meta(old)["migrated_utc"] == meta["migrated_utc"]


def test_an_empty_version_1_log_is_migrated_too(tmp_path: Path) -> None:
    path = tmp_path / "old.labkit"
    create_version_1(path)
    with RoundLog(path) as lg:
        sid = lg.new_session()
        assert lg.append(sid, round=0, ranking=[0], m=1, answer="none_better").answer == (
            "none_better"
        )
    assert _meta(path)["schema_version"] == "2"


def test_refuses_wrong_format_name(new_target: Callable[[], Target]) -> None:
    path = new_target()
    RoundLog(path).close()
    _sql(path, "UPDATE labkit_meta SET value = 'something.else' WHERE key = 'format'")
    with pytest.raises(ValueError, match=r"names format 'something\.else'"):
        RoundLog(path)


def test_refuses_directory_and_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        RoundLog(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        RoundLog(tmp_path / "no" / "such" / "dir.labkit")
    with pytest.raises(ValueError, match="busy_timeout"):
        RoundLog(tmp_path / "a.labkit", busy_timeout=-1)


def test_closed_log_refuses_work(new_target: Callable[[], Target]) -> None:
    lg = RoundLog(new_target())
    sid = lg.new_session()
    lg.close()
    lg.close()  # idempotent
    assert lg.closed
    with pytest.raises(ValueError, match="is closed"):
        lg.append(sid, round=0, ranking=[0], m=1)
    with pytest.raises(ValueError, match="is closed"):
        lg.rounds(sid)


# -- append and read back ---------------------------------------------------------------------


def test_append_round_trips_every_field(log: RoundLog) -> None:
    sid = log.new_session(meta={"optimizer": "ZORankSGD", "lr": 0.1, "seed": 0})
    t0 = time.time()
    written = log.append(
        sid,
        round=0,
        ranking=torch.tensor([2, 0]),
        m=4,
        rater="ada",
        seed=2**64 - 1,  # torch's largest seed does not fit SQLite's int64
        kind="line_search",
        meta={"step": 0.5, "note": "first"},
    )
    t1 = time.time()
    (r,) = log.rounds(sid)
    assert isinstance(r, Round)
    assert written == r  # append returns the row as read back, without re-reading the file
    assert r.session_id == sid
    assert r.round == 0
    assert r.ranking == (2, 0)
    assert r.m == 4
    assert r.rater == "ada"
    assert r.seed == 2**64 - 1
    assert r.kind == "line_search"
    assert r.meta == {"step": 0.5, "note": "first"}
    assert r.undone is False and r.undone_utc is None
    assert r.candidates is None and r.candidates_shape is None
    assert t0 - 1e-3 <= r.time_epoch <= t1 + 1e-3
    # The ISO string and the epoch are one reading of the clock, in UTC.
    parsed = datetime.fromisoformat(r.time_utc)
    offset = parsed.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    assert math.isclose(parsed.timestamp(), r.time_epoch, abs_tol=1e-5)
    assert log.session_meta(sid) == {"optimizer": "ZORankSGD", "lr": 0.1, "seed": 0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_candidates_round_trip_bit_for_bit(log: RoundLog, dtype: torch.dtype) -> None:
    sid = log.new_session()
    g = torch.Generator().manual_seed(3)
    X = torch.randn(5, 2, 3, generator=g).to(dtype)
    written = log.append(sid, round=0, ranking=[4, 1, 2], m=5, candidates=X)
    (r,) = log.rounds(sid)
    assert written == r and written.candidates is not None
    assert torch.equal(written.candidates.view(torch.uint8), X.view(torch.uint8))
    assert r.candidates is not None
    assert r.candidates.dtype == dtype
    assert r.candidates.device.type == "cpu"
    assert r.candidates.shape == (5, 2, 3)
    assert torch.equal(r.candidates.view(torch.uint8), X.contiguous().view(torch.uint8))
    assert r.candidates_shape == (5, 2, 3)
    assert r.candidates_dtype == str(dtype).removeprefix("torch.")
    (lite,) = log.rounds(sid, with_candidates=False)
    assert lite.candidates is None and lite.candidates_shape == (5, 2, 3)


def test_ties_and_the_answer_kind_round_trip(log: RoundLog) -> None:
    sid = log.new_session()
    plain = log.append(sid, round=0, ranking=[3, 1, 0], m=4)
    tied = log.append(sid, round=1, ranking=[3, 1, 0], m=4, ties=np.array([1, 2]))
    none_better = log.append(sid, round=2, ranking=[0], m=4, answer="none_better")
    assert (plain.ties, plain.answer) == ((), "ranking")
    assert (tied.ties, tied.answer) == ((1, 2), "ranking")
    assert (none_better.ranking, none_better.ties, none_better.answer) == ((0,), (), "none_better")
    assert log.rounds(sid) == [plain, tied, none_better]
    assert all(type(p) is int for p in log.rounds(sid)[1].ties)


def test_the_database_refuses_an_unknown_answer_kind_itself(log: RoundLog) -> None:
    """Not only append: the table's CHECK keeps any other writer from storing a bogus kind."""
    sid = log.new_session()
    log.append(sid, round=0, ranking=[0], m=1)
    with pytest.raises(_INTEGRITY, match=r"(?i)check"):
        _sql(log, "UPDATE rounds SET answer = 'maybe'")
    assert [r.answer for r in log.rounds(sid)] == ["ranking"]


def test_non_contiguous_candidates_are_stored_as_seen(log: RoundLog) -> None:
    sid = log.new_session()
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    X = base[:, ::2]  # a strided view, shape (4, 3)
    log.append(sid, round=0, ranking=[0], m=4, candidates=X)
    (r,) = log.rounds(sid)
    assert r.candidates is not None and torch.equal(r.candidates, X)


_BAD_APPENDS: list[tuple[dict[str, Any], str]] = [
    ({"ranking": [0, 0]}, "appears twice"),
    ({"ranking": [4]}, "has indices 0..3"),
    ({"ranking": []}, "at least one candidate"),
    ({"ranking": [0, 1, 2, 3, 0]}, "at most 4"),
    ({"ranking": [1.0]}, "must be an integer candidate index"),
    ({"m": 0}, "m must be an int >= 1"),
    ({"m": 4.0}, "m must be an int >= 1"),
    ({"round": -1}, "round must be an int >= 0"),
    ({"round": True}, "round must be an int >= 0"),
    ({"round": 1.0}, "round must be an int >= 0"),
    ({"seed": 1.5}, "seed must be an int"),
    ({"seed": False}, "seed must be an int"),
    ({"kind": ""}, "kind must be a non-empty string"),
    ({"rater": 3}, "rater must be a string"),
    ({"meta": {"x": float("nan")}}, "JSON-serializable"),
    ({"meta": {"x": object()}}, "JSON-serializable"),
    ({"meta": {1: "a"}}, "keys must be strings"),
    ({"meta": [1, 2]}, "must be a mapping"),
    ({"candidates": torch.zeros(3, 2)}, r"m=4 rows.*\(3, 2\)"),
    ({"candidates": torch.zeros(())}, r"m=4 rows"),
    ({"candidates": [[0.0]] * 4}, "must be a torch.Tensor"),
    ({"ties": [2]}, "tie position 2 .* positions 1..1"),
    ({"ties": [0]}, "tie position 0"),
    ({"ties": {1}}, "a set has no order"),
    ({"ties": [True]}, "of type bool"),
    ({"answer": "maybe"}, r"answer must be one of \('ranking', 'none_better'\); got 'maybe'"),
    ({"answer": None}, "answer must be one of"),
    ({"answer": "none_better"}, r"incumbent alone, without ties; got ranking \[1, 0\]"),
    ({"answer": "none_better", "ranking": [1], "ties": [1]}, "tie position 1"),
]


@pytest.mark.parametrize(("override", "message"), _BAD_APPENDS)
def test_bad_append_raises_and_writes_nothing(
    log: RoundLog, override: dict[str, Any], message: str
) -> None:
    sid = log.new_session()
    kwargs: dict[str, Any] = {"round": 0, "ranking": [1, 0], "m": 4}
    kwargs.update(override)
    with pytest.raises(ValueError, match=message):
        log.append(sid, **kwargs)
    assert _count_rows(log) == 0
    # The same round can still be answered properly afterwards.
    log.append(sid, round=0, ranking=[1, 0], m=4)
    assert [r.ranking for r in log.rounds(sid)] == [(1, 0)]


def test_unknown_session_is_refused(log: RoundLog) -> None:
    with pytest.raises(ValueError, match="create it with new_session"):
        log.append("0" * 32, round=0, ranking=[0], m=1)
    with pytest.raises(ValueError, match="no session"):
        log.rounds("0" * 32)
    with pytest.raises(ValueError, match="no session"):
        log.session_meta("0" * 32)
    with pytest.raises(ValueError, match="non-empty string"):
        log.append("", round=0, ranking=[0], m=1)
    assert _count_rows(log) == 0


def test_new_session_ids_and_meta(log: RoundLog) -> None:
    a = log.new_session(meta={"task": "a"})
    b = log.new_session()
    assert a != b and len(a) == 32 and int(a, 16) >= 0
    assert log.sessions() == [a, b]
    assert log.session_meta(b) == {}
    rec = log.session(a)
    assert rec.session_id == a and rec.meta == {"task": "a"} and rec.created_epoch > 0
    with pytest.raises(ValueError, match="JSON-serializable"):
        log.new_session(meta={"bad": float("inf")})
    assert log.sessions() == [a, b]


# -- round numbering, undo --------------------------------------------------------------------


def test_duplicate_live_round_is_refused(log: RoundLog) -> None:
    sid = log.new_session()
    seq = log.append(sid, round=0, ranking=[0], m=2).seq
    with pytest.raises(ValueError, match=rf"already has a live round 0 \(seq {seq}\)"):
        log.append(sid, round=0, ranking=[1], m=2)
    assert _count_rows(log) == 1
    # Another session may use the same number.
    other = log.new_session()
    log.append(other, round=0, ranking=[1], m=2)


_RAW_INSERT = (
    "INSERT INTO rounds(session_id, round, time_utc, time_epoch, kind, m, ranking, meta) "
    "VALUES (?, 0, 't', 0, 'gradient', 1, '[0]', '{}')"
)


def test_live_round_uniqueness_is_enforced_by_the_database_itself(log: RoundLog) -> None:
    """Even a writer that skipped append()'s check could not add a second live row."""
    sid = log.new_session()
    log.append(sid, round=0, ranking=[0], m=1)
    with pytest.raises(_INTEGRITY, match=r"(?i)unique"):
        _sql(log, _RAW_INSERT, (sid,))
    assert _count_rows(log) == 1


def test_undo_keeps_the_row_and_frees_the_number(log: RoundLog) -> None:
    sid = log.new_session()
    s0 = log.append(sid, round=0, ranking=[0, 1], m=2).seq
    s1 = log.append(sid, round=1, ranking=[1, 0], m=2).seq
    assert log.next_round(sid) == 2
    assert log.mark_undone(sid, 1) == s1
    assert log.next_round(sid) == 1
    with pytest.raises(ValueError, match="no live round 1 to undo"):
        log.mark_undone(sid, 1)
    with pytest.raises(ValueError, match="no live round 5 to undo"):
        log.mark_undone(sid, 5)
    s1b = log.append(sid, round=1, ranking=[0], m=2).seq
    assert s1b > s1  # the redo is a new, later row
    live = log.rounds(sid)
    assert [(r.seq, r.round, r.ranking) for r in live] == [(s0, 0, (0, 1)), (s1b, 1, (0,))]
    everything = log.rounds(sid, include_undone=True)
    assert [(r.seq, r.undone) for r in everything] == [(s0, False), (s1, True), (s1b, False)]
    assert everything[1].ranking == (1, 0) and everything[1].undone_utc is not None
    # Undo twice in a row and redo: undone rows pile up, at most one live per number.
    log.mark_undone(sid, 1)
    log.append(sid, round=1, ranking=[1], m=2)
    assert [r.round for r in log.rounds(sid, include_undone=True)] == [0, 1, 1, 1]
    assert [r.ranking for r in log.rounds(sid)] == [(0, 1), (1,)]
    assert _count_rows(log) == 4  # nothing was ever deleted


def test_undo_of_the_last_round_only(log: RoundLog) -> None:
    """``last=True`` (what a session uses) refuses any but the last live round, changing nothing."""
    sid = log.new_session()
    for r in range(3):
        log.append(sid, round=r, ranking=[0], m=2)
    with pytest.raises(ValueError, match=r"round 1 is not the last live round .* up to 2"):
        log.mark_undone(sid, 1, last=True)
    assert [r.round for r in log.rounds(sid)] == [0, 1, 2]
    log.mark_undone(sid, 2, last=True)
    log.mark_undone(sid, 1, last=True)
    assert [r.round for r in log.rounds(sid)] == [0]


@settings(
    max_examples=30,
    deadline=None,
    # new_target hands out a fresh place for every call, so one per example is sound.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(0, 4)),
            st.tuples(st.just("undo"), st.integers(0, 4)),
        ),
        max_size=25,
    )
)
def test_log_matches_a_model_of_append_and_undo(
    new_target: Callable[[], Target], ops: list[tuple[str, int]]
) -> None:
    """Random appends/undos against a list-of-dicts model of the same rules."""
    with RoundLog(new_target()) as lg:
        sid = lg.new_session()
        model: list[dict[str, Any]] = []  # one entry per row, in seq order
        for n, (op, rnd) in enumerate(ops):
            live = [row for row in model if row["round"] == rnd and not row["undone"]]
            if op == "append":
                if live:
                    with pytest.raises(ValueError, match="already has a live round"):
                        lg.append(sid, round=rnd, ranking=[n % 3], m=3)
                else:
                    lg.append(sid, round=rnd, ranking=[n % 3], m=3)
                    model.append({"round": rnd, "ranking": (n % 3,), "undone": False})
            else:
                if live:
                    lg.mark_undone(sid, rnd)
                    live[0]["undone"] = True
                else:
                    with pytest.raises(ValueError, match="no live round"):
                        lg.mark_undone(sid, rnd)
        got = [(r.round, r.ranking, r.undone) for r in lg.rounds(sid, include_undone=True)]
        assert got == [(row["round"], row["ranking"], row["undone"]) for row in model]
        assert [(r.round, r.ranking) for r in lg.rounds(sid)] == [
            (row["round"], row["ranking"]) for row in model if not row["undone"]
        ]
        live_rounds = [row["round"] for row in model if not row["undone"]]
        assert lg.next_round(sid) == (max(live_rounds) + 1 if live_rounds else 0)


# -- sessions sharing a file ------------------------------------------------------------------


def test_sessions_share_a_file_without_mixing(log: RoundLog) -> None:
    a = log.new_session(meta={"who": "a"})
    b = log.new_session(meta={"who": "b"})
    for i in range(3):
        log.append(a, round=i, ranking=[0], m=2)
        log.append(b, round=i, ranking=[1], m=2)
    assert [r.ranking for r in log.rounds(a)] == [(0,)] * 3
    assert [r.ranking for r in log.rounds(b)] == [(1,)] * 3
    seqs = [r.seq for r in log.rounds(a)] + [r.seq for r in log.rounds(b)]
    assert len(set(seqs)) == 6


def test_threads_share_one_log(log: RoundLog) -> None:
    """Widget callbacks may arrive on other threads: one RoundLog serves them all."""
    sids = [log.new_session() for _ in range(4)]
    errors: list[BaseException] = []

    def work(sid: str) -> None:
        try:
            for i in range(50):
                log.append(sid, round=i, ranking=[i % 3], m=3)
                log.rounds(sid, with_candidates=False)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s,)) for s in sids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for sid in sids:
        assert [r.round for r in log.rounds(sid)] == list(range(50))


# -- exports ----------------------------------------------------------------------------------


def _fill(log: RoundLog) -> tuple[str, str]:
    a = log.new_session(meta={"task": "a"})
    b = log.new_session(meta={"task": "b"})
    log.append(a, round=0, ranking=[2, 0], m=3, rater="ada", seed=11, meta={"x": 1})
    log.append(a, round=1, ranking=[1], m=3, seed=2**63, candidates=torch.arange(6.0).reshape(3, 2))
    log.mark_undone(a, 1)
    log.append(a, round=1, ranking=[0, 1, 2], m=3, kind="line_search", ties=[2])
    log.append(b, round=0, ranking=[0], m=1, answer="none_better")
    return a, b


def test_to_dataframe(log: RoundLog) -> None:
    import pandas as pd

    a, b = _fill(log)
    df = log.to_dataframe()
    assert list(df["seq"]) == [1, 2, 3, 4]
    assert list(df["session_id"]) == [a, a, a, b]
    assert list(df["undone"]) == [False, True, False, False]
    assert df["ranking"].iloc[0] == (2, 0)
    assert df["seed"].iloc[1] == 2**63
    assert df["meta"].iloc[0] == {"x": 1}
    assert df["candidates_shape"].iloc[1] == (3, 2)
    assert list(df["ties"]) == [(), (), (2,), ()]
    assert list(df["answer"]) == ["ranking", "ranking", "ranking", "none_better"]
    assert isinstance(df["time_utc"].dtype, pd.DatetimeTZDtype)
    only_a_live = log.to_dataframe(a, include_undone=False)
    assert list(only_a_live["round"]) == [0, 1] and not only_a_live["undone"].any()
    assert len(log.to_dataframe(include_undone=False)) == 3


def test_export_csv(log: RoundLog, tmp_path: Path) -> None:
    a, b = _fill(log)
    out = log.export_csv(tmp_path / "rounds.csv")
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["session_id"] for r in rows] == [a, a, a, b]
    assert json.loads(rows[0]["ranking"]) == [2, 0]
    assert rows[0]["rater"] == "ada" and rows[0]["seed"] == "11"
    assert int(rows[1]["seed"]) == 2**63
    assert rows[1]["undone"] == "1" and json.loads(rows[1]["candidates_shape"]) == [3, 2]
    assert json.loads(rows[0]["meta"]) == {"x": 1}
    assert rows[2]["kind"] == "line_search"
    assert [json.loads(r["ties"]) for r in rows] == [[], [], [2], []]
    assert [r["answer"] for r in rows] == ["ranking", "ranking", "ranking", "none_better"]
    assert list(rows[0]) == list(roundlog_module._EXPORT_COLUMNS)
    with log.export_csv(tmp_path / "b.csv", session_id=b).open(newline="") as f:
        only_b = list(csv.DictReader(f))
    assert [r["session_id"] for r in only_b] == [b]


def test_export_json(log: RoundLog, tmp_path: Path) -> None:
    a, b = _fill(log)
    doc = json.loads(log.export_json(tmp_path / "log.json", include_candidates=True).read_text())
    assert doc["format"] == "labkit.round_log" and doc["schema_version"] == SCHEMA_VERSION
    assert [s["session_id"] for s in doc["sessions"]] == [a, b]
    assert doc["sessions"][0]["meta"] == {"task": "a"}
    ra = doc["sessions"][0]["rounds"]
    assert [r["round"] for r in ra] == [0, 1, 1]
    assert [r["undone"] for r in ra] == [False, True, False]
    assert ra[1]["seed"] == str(2**63)  # beyond 2**53: kept exact as a string
    assert ra[0]["seed"] == 11
    assert ra[1]["candidates"] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert ra[0]["candidates"] is None
    assert [(r["ties"], r["answer"]) for r in ra] == [([], "ranking")] * 2 + [([2], "ranking")]
    assert doc["sessions"][1]["rounds"][0]["answer"] == "none_better"
    live_b = json.loads(
        log.export_json(tmp_path / "b.json", session_id=b, include_undone=False).read_text()
    )
    assert len(live_b["sessions"]) == 1 and "candidates" not in live_b["sessions"][0]["rounds"][0]


# -- real processes ---------------------------------------------------------------------------


def _fork_writer(body: Any) -> tuple[int, int]:
    """Fork a child that runs ``body(write_fd)`` and never returns into pytest; (pid, read_fd).

    fork, not a fresh interpreter: importing torch takes seconds, and the kill tests need dozens of
    writers. The child is a real separate process with a connection of its own (it never touches
    the parent's, which it inherits, and leaves by os._exit, which closes nothing).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            body(w)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(3)
        os._exit(0)
    os.close(w)
    return pid, r


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks).decode()


def _wait_all(pids: list[int], *, timeout: float) -> list[int]:
    """Wait for forked children; on the first failure or at ``timeout``, SIGKILL the rest.

    Returns the wait statuses in the order of ``pids`` (SIGKILLed ones read as signalled).
    """
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while len(statuses) < len(pids):
        for pid in pids:
            if pid in statuses:
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses[pid] = status
        failed = any(not (os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0) for s in statuses.values())
        if failed or time.monotonic() > deadline:
            for pid in pids:
                if pid not in statuses:
                    os.kill(pid, signal.SIGKILL)
                    statuses[pid] = os.waitpid(pid, 0)[1]
        time.sleep(0.005)
    return [statuses[pid] for pid in pids]


def _concurrent_writer(path: Target, n: int, tag: str, go: int, w: int) -> None:
    """Child body: wait for the go signal, open (create) the log, append ``n`` rounds."""
    os.read(go, 1)  # start together: both create the file at once
    with RoundLog(path) as log:
        sid = log.new_session(meta={"writer": tag})
        for i in range(n):
            log.append(sid, round=i, ranking=[i % 4, (i + 1) % 4], m=4, seed=i, rater=tag)
            if i == n // 2:
                # Rendezvous half-way, so each writer's second half surely runs while the other
                # is writing too (otherwise one might finish before the other is scheduled).
                deadline = time.monotonic() + 30.0
                while not any(
                    len(log.rounds(s, with_candidates=False)) > n // 2
                    for s in log.sessions()
                    if s != sid
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"writer {tag}: the other writer never got half-way")
                    time.sleep(0.001)
    os.write(w, f"{sid}\n".encode())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_two_processes_appending_at_once_lose_nothing(new_target: Callable[[], Target]) -> None:
    """Two processes create the same new log and append 200 rounds each concurrently."""
    path = new_target()
    n = 200
    tags = ("p0", "p1")
    go_r, go_w = os.pipe()
    children = [
        _fork_writer(lambda w, tag=tag: _concurrent_writer(path, n, tag, go_r, w)) for tag in tags
    ]
    os.write(go_w, b"GO")
    os.close(go_r)
    os.close(go_w)
    # Wait for both; if one fails, stop the other at once (it would wait for it half-way).
    statuses = _wait_all([pid for pid, _ in children], timeout=60.0)
    sids = [_read_all(r).strip() for _, r in children]
    for status in statuses:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, statuses
    with RoundLog(path) as lg:
        assert sorted(lg.sessions()) == sorted(sids)
        seqs = []
        for sid, tag in zip(sids, tags, strict=True):
            rounds = lg.rounds(sid)
            assert [r.round for r in rounds] == list(range(n))
            assert [r.seed for r in rounds] == list(range(n))
            assert {r.rater for r in rounds} == {tag}
            assert [r.ranking for r in rounds] == [(i % 4, (i + 1) % 4) for i in range(n)]
            seqs.append([r.seq for r in rounds])
        assert len(lg.to_dataframe()) == 2 * n
    assert sorted(seqs[0] + seqs[1]) == list(range(1, 2 * n + 1))
    # The two writers' rows are interleaved in the file, not one block after the other.
    assert min(seqs[0]) < max(seqs[1]) and min(seqs[1]) < max(seqs[0])
    _assert_healthy(path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_never_loses_a_returned_append(new_target: Callable[[], Target]) -> None:
    """SIGKILL a writer at random points 25 times; every append that returned is in the log."""
    path = new_target()
    with RoundLog(path) as lg:
        sid = lg.new_session(meta={"test": "sigkill"})
    # Candidates of 8 × 512 float32 (16 KiB): each commit spans several pages of the WAL, so
    # kills land inside multi-page writes and, now and then, inside a checkpoint.
    X = torch.randn(8, 512, generator=torch.Generator().manual_seed(0))
    rng = random.Random(20240)
    expected_next = 0
    kills = 0
    for _ in range(25):
        start = expected_next

        def body(w: int, start: int = start) -> None:
            with RoundLog(path) as child_log:
                i = start
                while True:
                    child_log.append(
                        sid, round=i, ranking=[i % 8, (i + 3) % 8], m=8, seed=i, candidates=X
                    )
                    os.write(w, f"{i}\n".encode())  # only after append returned
                    i += 1

        pid, r = _fork_writer(body)
        time.sleep(rng.uniform(0.0, 0.06))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        printed = [int(x) for x in _read_all(r).split()]
        # It died of our SIGKILL, not of an error of its own.
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        kills += 1
        assert printed == list(range(start, start + len(printed)))
        _assert_healthy(path)
        with RoundLog(path) as lg:
            rounds = lg.rounds(sid, with_candidates=False)
            got = [r.round for r in rounds]
            # Every returned append is there; at most one more committed before its print.
            assert got[: start + len(printed)] == list(range(start + len(printed)))
            assert len(got) - (start + len(printed)) in (0, 1)
            assert got == list(range(len(got)))
            assert all(r.ranking == (r.round % 8, (r.round + 3) % 8) for r in rounds)
            last = lg.rounds(sid)[-1] if rounds else None
            if last is not None:
                assert last.candidates is not None and torch.equal(last.candidates, X)
            expected_next = lg.next_round(sid)
    assert kills == 25
    # The writers did get work done between kills (how much depends on the disk's fsync).
    assert expected_next > 0


def _read_line(fd: int) -> str:
    """Block until one whole line has come through the pipe (byte by byte: nothing more)."""
    out = b""
    while not out.endswith(b"\n"):
        b = os.read(fd, 1)
        if not b:
            break
        out += b
    return out.decode()


def _create_and_append(path: Target, w: int) -> None:
    """Child body: create the log at ``path``, one session, one round; report each step."""
    os.write(w, b"start\n")
    with RoundLog(path) as child_log:
        os.write(w, b"open\n")
        sid = child_log.new_session()
        child_log.append(sid, round=0, ranking=[0], m=1)
        os.write(w, f"{sid}\n".encode())
    time.sleep(10)  # wait for the kill


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_while_creating_the_log_leaves_it_usable(new_target: Callable[[], Target]) -> None:
    """Kill writers at points spread over the creation of a fresh log and its first round."""
    # 1. How long does creating a log and appending one round take here and now (tens of ms:
    #    WAL switch, schema, fsyncs)? Time one child from "start" to its last line.
    calibrate = new_target()
    pid, r = _fork_writer(lambda w: _create_and_append(calibrate, w))
    assert _read_line(r) == "start\n"
    t0 = time.perf_counter()
    assert _read_line(r) == "open\n"
    _read_line(r)
    duration = time.perf_counter() - t0
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    # 2. Kill fresh writers at evenly spread fractions of that time (and a bit beyond).
    n = 15
    outcomes: list[int] = []
    for k in range(n):
        path = new_target()
        pid, r = _fork_writer(lambda w, path=path: _create_and_append(path, w))
        assert _read_line(r) == "start\n"
        time.sleep(1.2 * duration * k / (n - 1))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        lines = _read_all(r).split()
        outcomes.append(len(lines))
        # 3. Whatever point it died at, the file opens, keeps a returned append, takes new ones.
        with RoundLog(path) as lg:
            if len(lines) == 2:  # the child's append returned: it must be there
                assert [x.round for x in lg.rounds(lines[1])] == [0]
            sid = lg.new_session()
            lg.append(sid, round=0, ranking=[0], m=1)
            assert lg.rounds(sid)[0].ranking == (0,)
        _assert_healthy(path)
    # The kills did land during the creation, not only after it: at least one writer died
    # before its append returned (the first ones are killed at once).
    assert min(outcomes) < 2, outcomes


def _race(path: Target, sid: str, rounds: int, tag: int, m: int, go: int, w: int) -> None:
    """Child body: on the go signal, try to append every round; report the rounds it won."""
    with RoundLog(path) as lg:
        os.read(go, 1)
        won = []
        for rnd in range(rounds):
            try:
                lg.append(sid, round=rnd, ranking=[tag], m=m, rater=f"w{tag}")
            except ValueError as err:
                if f"already has a live round {rnd} (seq " not in str(err):
                    raise
            else:
                won.append(rnd)
    os.write(w, json.dumps(won).encode())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_writers_racing_for_the_same_rounds_get_one_live_row_each(
    new_target: Callable[[], Target],
) -> None:
    """Four processes append every round of one session at once: each round has one winner,
    the others get the clear ValueError, and the log holds exactly one row per round."""
    path = new_target()
    with RoundLog(path) as lg:
        sid = lg.new_session()
    writers, rounds = 4, 40
    go_r, go_w = os.pipe()
    children = [
        _fork_writer(lambda w, tag=tag: _race(path, sid, rounds, tag, writers, go_r, w))
        for tag in range(writers)
    ]
    time.sleep(0.2)  # let every child connect, so they start the race together
    os.write(go_w, b"G" * writers)
    os.close(go_r)
    os.close(go_w)
    statuses = _wait_all([pid for pid, _ in children], timeout=120.0)
    won = [json.loads(_read_all(r)) for _, r in children]
    for status in statuses:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, statuses
    assert sorted(itertools.chain.from_iterable(won)) == list(range(rounds))
    with RoundLog(path) as lg:
        rows = lg.rounds(sid, include_undone=True)
        assert [r.round for r in rows] == list(range(rounds))  # nothing undone, nothing twice
        winner = {rnd: tag for tag, rs in enumerate(won) for rnd in rs}
        assert all(r.rater == f"w{winner[r.round]}" for r in rows)
        assert all(r.ranking == (winner[r.round],) for r in rows)
    assert _count_rows(path) == rounds
    _assert_healthy(path)


# -- PostgreSQL only --------------------------------------------------------------------------


def test_postgres_log_gets_the_schema_and_commits_synchronously(postgres: PostgresServer) -> None:
    url = postgres.fresh_database()  # a new database: the log goes into its public schema
    with RoundLog(url) as lg:
        assert lg.path is None  # a database is no file
        assert repr(lg) == f"RoundLog({url!r}, open)"
        db = lg._db
        assert db is not None
        # The server's default is off (tests/_postgres.py); the log's connection turned it on,
        # so COMMIT (and append) returns only after the WAL is flushed.
        assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        lg.append(lg.new_session(), round=0, ranking=[0], m=1)
    assert _sql(url, "SHOW synchronous_commit") == [("off",)]
    meta = dict(_sql(url, "SELECT key, value FROM labkit_meta"))
    assert meta["format"] == "labkit.round_log"
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    tables = {
        r[0] for r in _sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert tables == {"labkit_meta", "sessions", "rounds"}
    columns = dict(
        _sql(
            url,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'rounds'",
        )
    )
    assert columns["seq"] == "bigint" and columns["candidates"] == "bytea"
    assert columns["ties"] == "text" and columns["answer"] == "text"
    (index,) = _sql(url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'rounds_live_round'")
    assert "UNIQUE" in index[0] and index[0].endswith("WHERE (undone = 0)")
    identity = _sql(
        url,
        "SELECT is_identity, identity_generation FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = 'rounds' AND column_name = 'seq'",
    )
    assert identity == [("YES", "ALWAYS")]


def test_postgres_refuses_a_foreign_schema_without_touching_it(postgres: PostgresServer) -> None:
    url = postgres.fresh_log_url()
    _sql(url, "CREATE TABLE people (name TEXT)")
    with pytest.raises(ValueError, match=r"schema 'log_\d+' without a labkit_meta table.*people"):
        RoundLog(url)
    assert _sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()") == [
        ("people",)
    ]


def test_postgres_a_version_1_log_is_migrated_on_open(postgres: PostgresServer) -> None:
    url = postgres.fresh_log_url()
    with RoundLog(url) as lg:
        sid = lg.new_session()
        lg.append(sid, round=0, ranking=[2, 0], m=3, seed=5)
        lg.append(sid, round=1, ranking=[1], m=3, candidates=torch.arange(3.0))
        expected = lg.rounds(sid, include_undone=True)
    # Back to the version 1 layout: no ties, no answer column.
    _sql(url, "ALTER TABLE rounds DROP COLUMN ties, DROP COLUMN answer")
    _sql(url, "UPDATE labkit_meta SET value = '1' WHERE key = 'schema_version'")
    with RoundLog(url) as lg:
        assert lg.rounds(sid, include_undone=True) == expected
        assert lg.append(sid, round=2, ranking=[2, 1, 0], m=3, ties=[1]).ties == (1,)
        with pytest.raises(_INTEGRITY, match=r"(?i)check"):
            _sql(url, "UPDATE rounds SET answer = 'maybe'")  # the CHECK came back too
    meta = dict(_sql(url, "SELECT key, value FROM labkit_meta"))
    assert meta["schema_version"] == "2" and "migrated_utc" in meta


def test_postgres_the_index_decides_against_a_writer_that_skips_the_lock(
    postgres: PostgresServer,
) -> None:
    """A raw writer holds an uncommitted live round 0; append's check cannot see it, its INSERT
    waits on the unique index, and once the raw writer commits, append says the round is taken
    (with the winner's seq) and leaves the log usable."""
    url = postgres.fresh_log_url()
    with _open(url) as lg:
        sid = lg.new_session()
        db = lg._db
        assert db is not None
        backend_pid = db._conn.info.backend_pid  # type: ignore[attr-defined]
        outcome: dict[str, Any] = {}

        def append() -> None:
            try:
                outcome["row"] = lg.append(sid, round=0, ranking=[1], m=2)
            except BaseException as err:  # reported below
                outcome["error"] = err

        with psycopg.connect(url) as other:  # not autocommit: one open transaction
            seq = other.execute(_RAW_INSERT.replace("?", "%s") + " RETURNING seq", (sid,))
            (winner,) = seq.fetchone()  # type: ignore[misc]
            thread = threading.Thread(target=append)
            thread.start()
            deadline = time.monotonic() + 20
            while _sql(url, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?",
                       (backend_pid,)) != [("Lock",)]:  # fmt: skip
                assert time.monotonic() < deadline, "append never waited on the index"
                time.sleep(0.02)
            other.commit()
        thread.join(20)
        assert "row" not in outcome
        err = outcome["error"]
        assert isinstance(err, ValueError)
        assert f"already has a live round 0 (seq {winner})" in str(err)
        assert _count_rows(url) == 1
        assert lg.append(sid, round=1, ranking=[0], m=2).round == 1  # the transaction ended


def test_postgres_a_write_waits_for_its_session_lock_then_gives_up(
    postgres: PostgresServer,
) -> None:
    from labkit._roundlog_pg import _lock_key
    from labkit.roundlog import _APPLICATION_ID

    url = postgres.fresh_log_url()
    with RoundLog(url, busy_timeout=0.3) as lg:
        sid = lg.new_session()
        with psycopg.connect(url, autocommit=True) as other:
            key = (_APPLICATION_ID, _lock_key(sid))
            other.execute("SELECT pg_advisory_lock(%s::integer, %s::integer)", key)
            t0 = time.monotonic()
            with pytest.raises(psycopg.errors.LockNotAvailable):
                lg.append(sid, round=0, ranking=[0], m=1)
            assert 0.25 < time.monotonic() - t0 < 10
            with pytest.raises(psycopg.errors.LockNotAvailable):
                lg.mark_undone(sid, 0)
            other_sid = lg.new_session()  # another session's writes do not wait
            lg.append(other_sid, round=0, ranking=[0], m=1)
            other.execute("SELECT pg_advisory_unlock(%s::integer, %s::integer)", key)
        assert lg.append(sid, round=0, ranking=[0], m=1).round == 0
        assert _count_rows(url) == 2


def test_postgres_a_dropped_connection_is_replaced_before_the_next_statement(
    postgres: PostgresServer,
) -> None:
    url = postgres.fresh_log_url()
    with RoundLog(url) as lg:
        sid = lg.new_session()
        lg.append(sid, round=0, ranking=[0], m=1)

        def drop() -> int:
            db = lg._db
            assert db is not None
            pid = int(db._conn.info.backend_pid)  # type: ignore[attr-defined]
            postgres.execute(f"SELECT pg_terminate_backend({pid})")
            deadline = time.monotonic() + 20
            while _sql(url, "SELECT 1 FROM pg_stat_activity WHERE pid = ?", (pid,)):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            return pid

        first = drop()
        assert [r.round for r in lg.rounds(sid)] == [0]  # a read reconnects
        second = drop()
        assert lg.append(sid, round=1, ranking=[0], m=1).round == 1  # so does a write's BEGIN
        assert lg.next_round(sid) == 2
        assert len({first, second, lg._db._conn.info.backend_pid}) == 3  # type: ignore[union-attr]


def test_postgres_the_password_stays_out_of_names_messages_and_the_log(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.fresh_log_url(password="pw-Zq9/x")
    assert "pw-Zq9%2Fx@" in url  # (percent-encoded in the URL)
    with RoundLog(url) as lg:
        assert "pw-Zq9" not in repr(lg) and "//labkit@127.0.0.1" in repr(lg)
        sid = lg.new_session(meta={"task": "sphere"})
        lg.append(sid, round=0, ranking=[0], m=1)
        with pytest.raises(ValueError, match="no session") as missing:
            lg.rounds("0" * 32)
        assert "pw-Zq9" not in str(missing.value) and "127.0.0.1" in str(missing.value)
        assert "pw-Zq9" not in lg.export_json(tmp_path / "log.json").read_text()
    stored = _sql(url, "SELECT value FROM labkit_meta") + _sql(url, "SELECT meta FROM sessions")
    assert stored and not any("pw-Zq9" in str(v) for v in stored)
    # A password given as a parameter, and a connection that fails: named without it too.
    as_param = postgres.url("no_such_database", password=None) + "?password=pw-Zq9"
    with pytest.raises(ValueError, match="cannot open round log") as failed:
        RoundLog(as_param)
    message = str(failed.value)
    assert "no_such_database" in message and "pw-Zq9" not in message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


def test_only_postgres_urls_are_urls(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"a file path or a postgresql:// URL") as err:
        RoundLog("mysql://ada:pw-Zq9@db.lab/labkit")
    assert "pw-Zq9" not in str(err.value) and "mysql://ada@db.lab/labkit" in str(err.value)


def test_the_old_module_name_still_imports_the_same_round_log() -> None:
    """labkit.store was this module's name until 2026-11-30; kept for a release."""
    import labkit.roundlog as new
    import labkit.store as old

    assert old.__all__ == new.__all__
    assert all(getattr(old, name) is getattr(new, name) for name in new.__all__)
