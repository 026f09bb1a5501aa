"""A session process killed with SIGKILL at random points loses no acknowledged ranking.

The child runs an automated session (a deterministic judge stands in for the person) and prints
``acked N`` each time ``submit`` returns, i.e. each time a person would have seen their ranking
accepted. The parent kills it at random moments (fixed seed), restarts it (it resumes from the
log), and finally checks that every acknowledged round is in the log and that the resumed
optimizer equals an uninterrupted run of the same rounds, bit for bit.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.oracles import TopKJudge
from labkit.session import Session
from labkit.store import RoundLog
from labkit.tasks.functions import FunctionTask

CHILD = textwrap.dedent(
    """
    import sys, torch
    from labkit.optim.zo_ranksgd import ZORankSGD
    from labkit.oracles import TopKJudge
    from labkit.session import Session
    from labkit.store import RoundLog
    from labkit.tasks.functions import FunctionTask

    def make():
        return ZORankSGD(torch.linspace(-1, 1, 40), lr=0.05, mu=0.05, m=8, k=4, seed=5)

    db, id_file = sys.argv[1], sys.argv[2]
    log = RoundLog(db)
    try:
        sid = open(id_file).read().strip()
    except FileNotFoundError:
        sid = ""
    if sid:
        s = Session.resume(make(), log=log, session_id=sid)
    else:
        s = Session(make(), log=log)
        with open(id_file + ".tmp", "w") as f:
            f.write(s.session_id)
        import os
        os.replace(id_file + ".tmp", id_file)
    judge = TopKJudge(FunctionTask("sphere", d=40).score, k=4)
    print("ready", s.round, flush=True)
    while s.round < 10_000:
        rnd = s.submit(judge(s.candidates()))
        print("acked", rnd.round, flush=True)
    """
)


def _make() -> ZORankSGD:
    return ZORankSGD(torch.linspace(-1, 1, 40), lr=0.05, mu=0.05, m=8, k=4, seed=5)


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_acknowledged_ranking(tmp_path: Path) -> None:
    db, id_file = tmp_path / "log.sqlite", tmp_path / "session_id"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(20261125)
    acked: set[int] = set()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(20):
        child = subprocess.Popen(
            [sys.executable, str(script), str(db), str(id_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready.startswith("ready"), (ready, child.stderr.read() if child.stderr else "")
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
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
