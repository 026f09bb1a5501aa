"""A session process killed with SIGKILL loses no acknowledged ranking.

Two tests, each with a forked child (so torch is not imported two dozen times) that the parent
kills and restarts (the child resumes from the log):

* An automated session (a deterministic judge stands in for the person) prints ``acked N`` each
  time ``submit`` returns; it is killed at random moments (fixed seed).
* A session ranked through its ``RankingWidget``: the child plays the page
  (``set_state({"submitted": ...})``) and writes each state message the widget sends to the page
  that says "accepted" (``accepted_round``) or shows a round (``round_id``) to the pipe *before*
  it leaves. Fault-injection points stop the child at a chosen point of a chosen round, and the
  parent kills it there: in the window between the click and the log's commit, and in the
  window between the commit and the next round on screen.

Both finally check that every acknowledged round is in the log, with the ranking that was
acknowledged, and that the resumed optimizer equals an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from labkit.judges import TopKJudge
from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.roundlog import RoundLog
from labkit.session import Session
from labkit.tasks.functions import FunctionTask
from labkit.widgets import RankingWidget  # imported once, before the children fork


def _child(db: Path, id_file: Path, out: int) -> None:
    """The session process: resume (or start) and rank rounds until killed."""
    torch.set_num_threads(1)  # a forked child must not rely on the parent's thread pool
    log = RoundLog(db)  # a connection of its own: never share SQLite handles across fork
    sid = id_file.read_text().strip() if id_file.exists() else ""
    if sid:
        s = Session.resume(_make(), log=log, session_id=sid)
    else:
        s = Session(_make(), log=log)
        tmp = id_file.with_suffix(".tmp")
        tmp.write_text(s.session_id)
        os.replace(tmp, id_file)
    judge = TopKJudge(FunctionTask("sphere", d=40).score, k=4)
    os.write(out, f"ready {s.round}\n".encode())
    while True:
        rnd = s.submit(judge(s.candidates()))
        os.write(out, f"acked {rnd.round}\n".encode())


def _read_line(fd: int, timeout: float) -> str:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"child said nothing for {timeout} s (got {buf!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise EOFError(f"child closed its pipe (got {buf!r})")
        buf += chunk
    return buf.decode()


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def _make() -> ZORankSGD:
    return ZORankSGD(torch.linspace(-1, 1, 40), lr=0.05, mu=0.05, m=8, k=4, seed=5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_at_random_points_loses_no_acknowledged_ranking(tmp_path: Path) -> None:
    db, id_file = tmp_path / "log.sqlite", tmp_path / "session_id"
    rng = random.Random(20261125)
    acked: set[int] = set()
    for _ in range(24):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(r)
            try:
                _child(db, id_file, w)
            finally:
                os._exit(1)
        os.close(w)
        try:
            assert _read_line(r, 60).startswith("ready")
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            out = _read_all(r)
        finally:
            os.close(r)
        acked |= {int(line.split()[1]) for line in out.splitlines() if line.startswith("acked")}
    assert len(acked) >= 20, "the child should have got through some rounds"

    log = RoundLog(db)
    sid = id_file.read_text().strip()
    logged = log.rounds(sid)
    assert [r.round for r in logged] == list(range(len(logged)))  # no gaps, no duplicates
    assert acked <= {r.round for r in logged}  # every acknowledged ranking is there

    resumed = Session.resume(_make(), log=log, session_id=sid)
    reference = _make()
    judge = TopKJudge(FunctionTask("sphere", d=40).score, k=4)
    for _ in range(len(logged)):
        reference.tell(judge(reference.ask()))
    assert torch.equal(resumed.optimizer.x, reference.x)


# -- killed at fixed points of a round ranked through the widget ------------------------------

#: Fault-injection points, in the order a round passes them, and what a kill there must leave.
_NOT_TAKEN_YET = (
    "click",  # the page has sent the ranking; the kernel has not started on it
    "saving",  # the page was told "saving…"
    "insert",  # inside the log's transaction, before the INSERT
    "commit",  # inside the log's transaction, before COMMIT
)
_TAKEN = (
    "acked",  # the page was told "accepted"
    "tell",  # before the optimizer is told
    "render",  # while the next round is rendered
    "next",  # as the next round's message leaves for the page
)


class _Tiles:
    """A task whose rendering costs nothing: the test is about the round's path, not pictures."""

    mime = "image/png"
    maximize = False

    def render(self, X: torch.Tensor) -> list[bytes]:
        _point("render", _state["round"])
        return [b"tile %d" % i for i in range(X.shape[0])]


#: The child's fault-injection state: the point to stop at, the round being ranked, the pipe.
_state: dict[str, Any] = {}


def _say(line: str) -> None:
    os.write(_state["out"], f"{line}\n".encode())


def _point(name: str, rnd: int | None) -> None:
    """Stop here (and wait for the SIGKILL) if this is the point the parent chose."""
    if (name, rnd) == _state["stop_at"]:
        _say(f"at {name} {rnd}")
        time.sleep(600)


def _trace(statement: str) -> None:
    """SQLite's statement trace: runs before each statement, so also before the COMMIT."""
    if statement.startswith("INSERT INTO rounds"):
        _point("insert", _state["round"])
        _state["inserted"] = True
    elif statement == "COMMIT" and _state.pop("inserted", False):
        _point("commit", _state["round"])


def _widget_child(db: Path, id_file: Path, out: int, stop_at: tuple[str, int]) -> None:
    """Resume (or start) the session, show it, and rank its rounds through the widget."""
    import sqlite3

    torch.set_num_threads(1)
    _state.update(out=out, round=None, stop_at=stop_at)
    connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(_trace)
        return conn

    sqlite3.connect = traced_connect  # type: ignore[assignment] # this forked child only
    log = RoundLog(db)
    sid = id_file.read_text().strip() if id_file.exists() else ""
    task = _Tiles()
    if sid:
        s = Session.resume(_make(), log=log, session_id=sid, task=task, rater="ada")
    else:
        s = Session(_make(), task=task, log=log, rater="ada")
        tmp = id_file.with_suffix(".tmp")
        tmp.write_text(s.session_id)
        os.replace(tmp, id_file)
    tell = s.optimizer.tell

    def traced_tell(ranking: Any, *, ties: Any = None) -> None:
        _point("tell", _state["round"])
        tell(ranking, ties=ties)

    s.optimizer.tell = traced_tell  # type: ignore[method-assign]

    def to_page(widget: RankingWidget, msg: dict[str, Any], buffers: Any = None) -> None:
        """What a widget sends to the page: recorded before it leaves."""
        state = msg.get("state", {})
        rnd = _state["round"]
        if state.get("accepted_round") is not None:
            _say(f"acc {state['accepted_round']}")
        if state.get("round_id") is not None:
            _say(f"show {state['round_id']}")
            if rnd is not None and state["round_id"] == rnd + 1:
                _point("next", rnd)
        # ... the message leaves here (no kernel: nowhere to go) ...
        if str(state.get("status", "")).startswith("saving"):
            _point("saving", rnd)
        if state.get("accepted_round") is not None:
            _point("acked", state["accepted_round"])

    RankingWidget._send = to_page  # type: ignore[method-assign] # this forked child only
    _say(f"ready {s.round}")
    s.show(plot=False)
    w = s._widget
    judge = TopKJudge(FunctionTask("sphere", d=40).score, k=4)
    while True:
        rnd = w.round_id
        ranking = list(judge(s.candidates()))
        _state["round"] = rnd
        _say(f"click {rnd} {','.join(map(str, ranking))}")
        _point("click", rnd)
        w.set_state({"submitted": {"round": rnd, "ranking": ranking}})
        if w.error:
            raise AssertionError(f"the widget refused round {rnd}: {w.error}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_widget_session_killed_in_each_window_of_a_round(tmp_path: Path) -> None:
    db, id_file = tmp_path / "log.sqlite", tmp_path / "session_id"
    rng = random.Random(20261129)
    points = [*_NOT_TAKEN_YET, *_TAKEN] * 3  # 24 kills, each point 3 times
    rng.shuffle(points)
    clicked: dict[int, tuple[int, ...]] = {}  # round -> the ranking the page sent for it
    acked: set[int] = set()  # rounds the page was told are accepted
    shown: set[int] = set()  # rounds the page was shown (all earlier ones are taken)
    next_round = 0
    for point in points:
        stop_at = (point, next_round + rng.randint(0, 2))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(r)
            try:
                _widget_child(db, id_file, w, stop_at)
            finally:
                os._exit(1)
        os.close(w)
        lines: list[str] = []
        try:
            while not lines or not lines[-1].startswith("at "):
                lines.append(_read_line(r, 60).strip())
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            lines += _read_all(r).splitlines()
        finally:
            os.close(r)
        assert lines[0] == f"ready {next_round}" and lines[-1] == f"at {stop_at[0]} {stop_at[1]}"
        for line in lines:
            word, *rest = line.split()
            if word == "click":
                clicked[int(rest[0])] = tuple(int(i) for i in rest[1].split(","))
            elif word == "acc":
                acked.add(int(rest[0]))
            elif word == "show":
                shown.add(int(rest[0]))
        with RoundLog(db) as lg:
            logged = lg.rounds(id_file.read_text().strip())
        killed_round = stop_at[1]
        # The kill decides exactly: before the commit not taken, after it taken.
        expected = killed_round if point in _NOT_TAKEN_YET else killed_round + 1
        assert len(logged) == expected, f"killed at {stop_at}"
        # The page never heard "accepted" (or saw a later round) for a ranking not in the log.
        assert all(a < len(logged) for a in acked), (stop_at, acked, len(logged))
        assert all(n <= len(logged) for n in shown), (stop_at, shown, len(logged))
        if point in _TAKEN:
            assert killed_round in acked  # told right after the commit, before anything else
        next_round = len(logged)
    assert next_round >= 20, "the children should have got through some rounds"

    log = RoundLog(db)
    sid = id_file.read_text().strip()
    resumed = Session.resume(_make(), log=log, session_id=sid)
    assert acked <= set(range(resumed.round))
    for rnd in acked:  # every acknowledged ranking is in the log, as the page sent it
        assert resumed.history[rnd] == clicked[rnd]
    reference = _make()
    judge = TopKJudge(FunctionTask("sphere", d=40).score, k=4)
    for _ in range(resumed.round):
        reference.tell(judge(reference.ask()))
    assert torch.equal(resumed.optimizer.x, reference.x)
