"""A session process killed with SIGKILL at random points loses no acknowledged ranking.

The child (forked, so torch is not imported 24 times) runs an automated session (a
deterministic judge stands in for the person) and prints
``acked N`` each time ``submit`` returns, i.e. each time a person would have seen their ranking
accepted. The parent kills it at random moments (fixed seed), restarts it (it resumes from the
log), and finally checks that every acknowledged round is in the log and that the resumed
optimizer equals an uninterrupted run of the same rounds, bit for bit.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

import pytest
import torch

from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.oracles import TopKJudge
from labkit.session import Session
from labkit.store import RoundLog
from labkit.tasks.functions import FunctionTask


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
