"""Sessions: log before tell, undo, resume by replay, automated runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.judges import TopKJudge
from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.roundlog import Round, RoundLog
from labkit.session import Session, default_log_path
from labkit.tasks.functions import FunctionTask
from tests._postgres import PostgresServer
from tests._round_log_v1 import copy_as_version_1


def _opt(line_search: int = 0, seed: int = 7) -> ZORankSGD:
    return ZORankSGD(
        torch.tensor([1.5, -1.0]), lr=0.2, mu=0.1, m=6, k=3, seed=seed, line_search=line_search
    )


def _judge() -> TopKJudge:
    return TopKJudge(FunctionTask("sphere").score, k=3)


def test_submit_logs_before_telling_and_refuses_bad_rankings(tmp_path: Path) -> None:
    s = Session(_opt(), log=tmp_path / "log.sqlite", rater="ada")
    X = s.candidates()
    with pytest.raises(ValueError, match="appears twice"):
        s.submit([0, 0])
    with pytest.raises(ValueError, match=r"indices 0\.\.5"):
        s.submit([6])
    assert s.log.rounds(s.session_id) == []  # nothing logged
    assert torch.equal(s.candidates(), X)  # nothing told: the same round again
    rnd = s.submit([4, 1])
    assert rnd.ranking == (4, 1) and rnd.round == 0 and rnd.rater == "ada" and rnd.m == 6
    assert rnd.seed is not None
    assert s.round == 1 and s.history == [(4, 1)]
    assert s.log.rounds(s.session_id) == [rnd]  # the row append wrote, as the log holds it


def test_the_log_survives_when_tell_is_never_reached(tmp_path: Path) -> None:
    """The row is committed before the optimizer is told: a crash in between loses nothing."""
    s = Session(_opt(), log=tmp_path / "log.sqlite")
    s.candidates()

    def crash(ranking: object, *, ties: object = None) -> None:
        raise RuntimeError("power cut")

    s.optimizer.tell = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        s.submit([2, 0, 1])
    other = RoundLog(tmp_path / "log.sqlite")
    assert [r.ranking for r in other.rounds(s.session_id)] == [(2, 0, 1)]


@pytest.mark.parametrize("line_search", [0, 2])
def test_resume_replays_the_log_bit_for_bit(tmp_path: Path, line_search: int) -> None:
    path = tmp_path / "log.sqlite"
    s = Session(_opt(line_search), log=path, judge=_judge())
    s.run(9, progress=False)
    s.undo()
    s.run(4, progress=False)
    resumed = Session.resume(_opt(line_search), log=path, session_id=s.session_id)
    assert torch.equal(resumed.optimizer.x, s.optimizer.x)
    assert resumed.history == s.history and resumed.round == 12
    assert torch.equal(resumed.candidates(), s.candidates())


def _answer(s: Session, rng: np.random.Generator) -> Round:
    """A random answer to the current round: now and then "none is better" where the round
    shows the current iterate, else a top-3 ranking with random ties."""
    n = s.candidates().shape[0]
    if s.optimizer.incumbent_index is not None and rng.random() < 0.5:
        return s.submit(none_better=True)
    ranking = [int(i) for i in rng.permutation(n)[:3]]
    ties = [p for p in (1, 2) if rng.random() < 0.5]
    return s.submit(ranking, ties=ties)


@pytest.mark.parametrize("line_search", [0, 2])
def test_ties_and_none_better_are_logged_and_replay_bit_for_bit(
    tmp_path: Path, line_search: int
) -> None:
    path = tmp_path / "log.sqlite"
    s = Session(_opt(line_search), log=path, rater="ada")
    rng = np.random.default_rng(line_search)
    for _ in range(10):
        _answer(s, rng)
    s.undo()
    for _ in range(3):
        _answer(s, rng)
    rows = s.log.rounds(s.session_id)
    assert any(r.ties for r in rows)
    if line_search:
        assert any(r.answer == "none_better" for r in rows)
        assert all(
            r.ranking == (0,) and r.kind == "line_search" for r in rows if r.answer != "ranking"
        )
    resumed = Session.resume(_opt(line_search), log=path, session_id=s.session_id)
    assert torch.equal(resumed.optimizer.x, s.optimizer.x)
    assert torch.equal(resumed.candidates(), s.candidates())
    # The ties mattered: the same rankings told without them go elsewhere.
    untied = _opt(line_search)
    for r in rows:
        untied.ask()
        untied.tell(r.ranking)
    assert not torch.equal(untied.x, s.optimizer.x)


def test_none_better_needs_a_round_with_the_current_iterate(tmp_path: Path) -> None:
    s = Session(_opt(line_search=2), log=tmp_path / "log.sqlite")
    s.candidates()
    with pytest.raises(ValueError, match="round 0 does not show the current iterate"):
        s.submit(none_better=True)
    with pytest.raises(ValueError, match="needs a ranking, or none_better=True"):
        s.submit()
    with pytest.raises(ValueError, match="none_better must be True or False"):
        s.submit([0], none_better="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tie position 3"):
        s.submit([4, 1, 0], ties=[3])
    assert s.log.rounds(s.session_id) == [] and s.round == 0
    s.submit([4, 1, 0], ties=[1])
    x = s.optimizer.x.clone()
    assert s.optimizer.incumbent_index == 0  # a line-search round: x is row 0
    with pytest.raises(
        ValueError, match=r"is the ranking \[0\] \(the current one alone\); got \[1\]"
    ):
        s.submit([1], none_better=True)
    with pytest.raises(ValueError, match="one candidate has no two to tie"):
        s.submit(none_better=True, ties=[1])
    rnd = s.submit([0], none_better=True)  # the ranking may be given, if it is the right one
    assert (rnd.ranking, rnd.answer, rnd.ties) == ((0,), "none_better", ())
    assert rnd.meta["incumbent_index"] == 0
    assert torch.equal(s.optimizer.x, x)  # the current one stays


def test_resume_refuses_a_none_better_answer_that_names_another_candidate(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    s = Session(_opt(line_search=2), log=path)
    s.submit([3, 1, 0])
    # Written by hand (not through submit): "none is better" naming row 1, not the incumbent 0.
    s.log.append(s.session_id, round=1, ranking=[1], m=4, answer="none_better")
    with pytest.raises(ValueError, match=r"round 1 of the log answered 'none is better.*is 0"):
        Session.resume(_opt(line_search=2), log=path, session_id=s.session_id)


def test_a_log_written_before_ties_existed_still_resumes(tmp_path: Path) -> None:
    made = tmp_path / "made.sqlite"
    s = Session(_opt(line_search=2), log=made, judge=_judge())
    s.run(7, progress=False)
    old = tmp_path / "old.sqlite"
    copy_as_version_1(made, old)  # a genuine version 1 file holding these rounds
    resumed = Session.resume(_opt(line_search=2), log=old, session_id=s.session_id)
    assert torch.equal(resumed.optimizer.x, s.optimizer.x) and resumed.round == 7
    resumed.submit([2, 0, 1], ties=[2])  # the migrated file takes answers with ties
    again = Session.resume(_opt(line_search=2), log=old, session_id=s.session_id)
    assert torch.equal(again.optimizer.x, resumed.optimizer.x) and again.round == 8


def test_resume_refuses_an_optimizer_made_differently(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    s = Session(_opt(), log=path, judge=_judge())
    s.run(2, progress=False)
    with pytest.raises(ValueError, match="not the one session"):
        Session.resume(_opt(seed=8), log=path, session_id=s.session_id)
    with pytest.raises(ValueError, match="no session"):
        Session.resume(_opt(), log=path, session_id="0" * 32)


def test_resume_refusal_says_which_seed_a_seed_none_run_used(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"

    def make(seed: int | None) -> ZORankSGD:
        return ZORankSGD(torch.tensor([1.5, -1.0]), lr=0.2, mu=0.1, m=6, k=3, seed=seed)

    s = Session(make(None), log=path, judge=_judge())  # the seed is drawn from the OS
    s.run(3, progress=False)
    drawn = s.optimizer.seed
    assert isinstance(drawn, int) and s.log.session_meta(s.session_id)["seed"] == drawn
    with pytest.raises(ValueError, match=rf"make it with seed={drawn}"):
        Session.resume(make(None), log=path, session_id=s.session_id)
    resumed = Session.resume(make(drawn), log=path, session_id=s.session_id)
    assert torch.equal(resumed.optimizer.x, s.optimizer.x) and resumed.history == s.history


def test_a_cmaes_session_resumes(tmp_path: Path) -> None:
    from labkit.optim.cmaes import CMAES

    path = tmp_path / "log.sqlite"

    def make(sigma: float = 0.5) -> CMAES:
        return CMAES(torch.tensor([1.5, -1.0, 0.5]), sigma=sigma, m=6, seed=3)

    s = Session(make(), log=path, judge=TopKJudge(FunctionTask("sphere", d=3).score, k=3))
    s.run(5, progress=False)
    resumed = Session.resume(make(), log=path, session_id=s.session_id)
    assert torch.equal(resumed.optimizer.x, s.optimizer.x) and resumed.round == 5
    assert torch.equal(resumed.candidates(), s.candidates())
    with pytest.raises(ValueError, match=r"not the one session .* x0 or option"):
        Session.resume(make(sigma=0.6), log=path, session_id=s.session_id)


def test_undo_refuses_when_another_writer_moved_the_log_on(tmp_path: Path) -> None:
    """Two Session objects on one session id (a second kernel resumed it): the one that fell
    behind can neither log over the other's round nor undo a round that is not its last."""
    path = tmp_path / "log.sqlite"
    a = Session(_opt(), log=path, judge=_judge())
    a.run(2, progress=False)
    b = Session.resume(_opt(), log=path, session_id=a.session_id, judge=_judge())
    b.run(1, progress=False)  # round 2, written by b
    with pytest.raises(ValueError, match="live round 2"):
        a.submit(_judge()(a.candidates()))
    with pytest.raises(ValueError, match="not the last live round"):
        a.undo()
    live = a.log.rounds(a.session_id)
    assert [r.round for r in live] == [0, 1, 2]  # nothing marked, nothing lost
    assert a.round == 2 and len(a.history) == 2
    # The log still replays.
    again = Session.resume(_opt(), log=path, session_id=a.session_id)
    assert torch.equal(again.optimizer.x, b.optimizer.x)


def test_a_log_path_with_a_tilde_is_in_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    s = Session(_opt(), log="~/runs/log.sqlite")
    assert (tmp_path / "runs" / "log.sqlite").is_file() and not (tmp_path / "~").exists()
    assert s.log.path == tmp_path / "runs" / "log.sqlite"


def test_a_new_session_needs_a_fresh_optimizer(tmp_path: Path) -> None:
    opt = _opt()
    opt.ask()
    with pytest.raises(ValueError, match="fresh optimizer"):
        Session(opt, log=tmp_path / "log.sqlite")


def test_undo_marks_the_round_and_rolls_back_to_the_same_candidates(tmp_path: Path) -> None:
    s = Session(_opt(), log=tmp_path / "log.sqlite", judge=_judge())
    s.run(3, progress=False)
    x_before, X = s.optimizer.x.clone(), s.candidates()
    s.submit([5, 4, 3])
    undone = s.undo()
    assert undone.undone and undone.round == 3 and undone.ranking == (5, 4, 3)
    assert torch.equal(s.optimizer.x, x_before)
    assert torch.equal(s.candidates(), X)
    s.submit([0, 1, 2])  # the redo gets the same round number, a new row
    rows = s.log.rounds(s.session_id, include_undone=True)
    assert [(r.round, r.undone) for r in rows] == [(0, 0), (1, 0), (2, 0), (3, 1), (3, 0)]


def test_undo_beyond_the_snapshots_replays_the_log(tmp_path: Path) -> None:
    s = Session(_opt(), log=tmp_path / "log.sqlite", judge=_judge())
    reference = _opt()
    states = [reference.x.clone()]
    s.run(12, progress=False)
    for r in s.history:
        reference.ask()
        reference.tell(r)
        states.append(reference.x.clone())
    for back in range(1, 12):  # more undos than snapshots kept
        s.undo()
        assert torch.equal(s.optimizer.x, states[12 - back]), back
    with pytest.raises(ValueError, match="nothing to undo"):
        s.undo()
        s.undo()


def test_run_needs_a_judge_and_converges(tmp_path: Path) -> None:
    s = Session(_opt(), log=tmp_path / "log.sqlite")
    with pytest.raises(ValueError, match="judge"):
        s.run(1)
    task = FunctionTask("sphere")
    start = float(task.score(s.optimizer.x[None])[0])
    s.run(60, judge=_judge(), progress=False)
    assert float(task.score(s.optimizer.x[None])[0]) < 0.1 * start
    assert len(s.log.rounds(s.session_id)) == 60
    assert {r.rater for r in s.log.rounds(s.session_id)} == {"judge"}


def test_sessions_share_a_file(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    a = Session(_opt(), log=path, judge=_judge())
    b = Session(_opt(seed=3), log=path, judge=_judge())
    a.run(3, progress=False)
    b.run(5, progress=False)
    log = RoundLog(path)
    assert len(log.rounds(a.session_id)) == 3 and len(log.rounds(b.session_id)) == 5


def test_bad_session_arguments_are_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    for kwargs, match in [
        ({"rater": 5}, "rater must be a string"),
        ({"judge": 3}, "judge must be callable"),
        ({"meta": [1]}, "meta must be a dict"),
        ({"meta": {"fingerprint": "x"}}, r"meta keys \['fingerprint'\]"),
        ({"name": None}, "name must be a string"),
    ]:
        with pytest.raises(ValueError, match=match):
            Session(_opt(), log=path, **kwargs)
    s = Session(_opt(), log=path, meta={"study": "pilot"})
    assert s.log.session_meta(s.session_id)["study"] == "pilot"
    with pytest.raises(ValueError, match="meta must be a dict"):
        s.submit([0], meta="note")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rater must be a string"):
        s.submit([0], rater=7)  # type: ignore[arg-type]
    assert s.log.rounds(s.session_id) == []
    rnd = s.submit([0], meta={"kind": "bogus", "note": "first"})
    assert rnd.kind == "gradient" and rnd.meta["note"] == "first"


def test_resume_refuses_a_missing_log_without_creating_one(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(ValueError, match="no round log at"):
        Session.resume(_opt(), log=missing, session_id="0" * 32)
    assert not missing.exists()
    with pytest.raises(ValueError, match="must be a labkit RankOptimizer"):
        Session.resume("x", log=missing, session_id="0" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize("line_search", [0, 2])
def test_a_session_in_postgres_resumes_bit_for_bit(
    postgres: PostgresServer, line_search: int
) -> None:
    """The same replay as with a file, through a postgresql:// URL (never made into a Path)."""
    url = postgres.fresh_log_url()
    s = Session(_opt(line_search), log=url, rater="ada")
    rng = np.random.default_rng(line_search)
    for _ in range(9):
        _answer(s, rng)
    s.undo()
    for _ in range(4):
        _answer(s, rng)
    assert s.log.path is None and any(r.ties for r in s.log.rounds(s.session_id))
    resumed = Session.resume(_opt(line_search), log=url, session_id=s.session_id)
    assert torch.equal(resumed.optimizer.x, s.optimizer.x)
    assert resumed.history == s.history and resumed.round == 12
    assert torch.equal(resumed.candidates(), s.candidates())
    assert len(resumed.log.rounds(s.session_id, include_undone=True)) == 13  # the undone kept


def test_labkit_db_may_name_a_postgres_database(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.fresh_log_url()
    monkeypatch.setenv("LABKIT_DB", url)
    assert default_log_path() == url  # the URL as given, not a Path
    s = Session(_opt(), judge=_judge())  # what the apps do: no log given
    s.run(2, progress=False)
    with RoundLog(url) as log:
        assert log.sessions() == [s.session_id]
        assert [r.round for r in log.rounds(s.session_id)] == [0, 1]
    monkeypatch.setenv("LABKIT_DB", "~/runs/log.sqlite")
    assert default_log_path() == Path("~/runs/log.sqlite")
