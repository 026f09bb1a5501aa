"""Crowd sessions: rounds close at R votes or T seconds, the log replays every consensus exactly."""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch

from labkit._crowd_server import CrowdServer, build_crowd
from labkit.bench.crowd import rater_request
from labkit.consensus import RaterWeights
from labkit.crowd import AlreadyRanked, CrowdSession, recompute
from labkit.defaults import make_optimizer
from labkit.roundlog import RoundLog
from labkit.session import Session
from labkit.tasks.functions import FunctionTask


class Clock:
    """A wall clock that moves only when told (T is measured against logged times)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _task() -> FunctionTask:
    return FunctionTask("sphere", image_size=64)


def _opt(task: FunctionTask) -> Any:
    return make_optimizer(task, task.x0(seed=0), seed=0)


def _crowd(
    path: Path | str, *, raters: int = 3, seconds: float | None = 30.0, **kw: Any
) -> CrowdSession:
    task = _task()
    return CrowdSession(
        _opt(task), task=task, log=RoundLog(path), raters=raters, round_seconds=seconds, **kw
    )


def _answer(crowd: CrowdSession, rng: random.Random) -> list[int]:
    """A random answer of the size the open round asks for."""
    shown = crowd.current()
    order = list(range(shown.m))
    rng.shuffle(order)
    return order[: shown.k or shown.m]


def test_a_round_closes_when_r_raters_have_ranked(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=3)
    x0 = crowd.optimizer.x.clone()
    r = list(range(8))
    crowd.submit("ada", r, round=0)
    crowd.submit("bo", r, round=0)
    assert crowd.round == 0 and crowd.status()["ranked"] == 2
    assert torch.equal(crowd.optimizer.x, x0), "nothing is told before the round closes"
    crowd.submit("cy", [1, 0, *r[2:]], round=0)
    assert crowd.round == 1
    (row,) = crowd.log.rounds(crowd.session_id)
    assert row.rater == "consensus" and row.meta["crowd"]["closed_by"] == "raters"
    assert [v[0] for v in row.meta["crowd"]["votes"]] == ["ada", "bo", "cy"]
    assert row.ranking == tuple(r), "two of three put 0 before 1, all agree on the rest"
    # Each raw ranking is in the rater's own session, under their id.
    rater_rows = [
        rr
        for sid in crowd.log.sessions()
        if crowd.log.session_meta(sid).get("crowd") == crowd.session_id
        for rr in crowd.log.rounds(sid)
    ]
    assert sorted((rr.rater, rr.round) for rr in rater_rows) == [("ada", 0), ("bo", 0), ("cy", 0)]


def test_a_round_closes_t_seconds_after_its_first_ranking_and_never_empty(tmp_path: Path) -> None:
    clock = Clock()
    crowd = _crowd(tmp_path / "log.sqlite", raters=5, seconds=30.0, clock=clock)
    clock.now += 3600
    assert not crowd.poll() and crowd.round == 0, "a round nobody ranked does not close"
    clock.now = time.time()
    vote = crowd.submit("ada", list(range(8)), round=0)
    assert crowd.closes_at() == pytest.approx(vote.row.time_epoch + 30.0)
    clock.now = vote.row.time_epoch + 29.9
    crowd.poll()
    assert crowd.round == 0
    clock.now = vote.row.time_epoch + 30.0
    assert crowd.poll() and crowd.round == 1
    (row,) = crowd.log.rounds(crowd.session_id)
    assert row.meta["crowd"]["closed_by"] == "time" and row.ranking == tuple(range(8))


def test_a_late_ranking_is_logged_and_not_told(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=2)
    crowd.submit("ada", list(range(8)), round=0)
    crowd.submit("bo", list(range(8)), round=0)
    assert crowd.round == 1
    state = crowd.optimizer.state_dict()
    late = crowd.submit("cy", list(range(8))[::-1], round=0)
    assert late.late and late.row.meta == {"late": True} and late.row.round == 0
    assert crowd.round == 1
    assert torch.equal(crowd.optimizer.state_dict()["x"], state["x"])
    assert [v.rater for v in crowd.votes(0)] == ["ada", "bo"]
    assert crowd.status()["ranked"] == 0, "the late vote does not count for round 1"
    stats = {s.rater: s for s in crowd.rater_stats()}
    assert stats["cy"].late == 1 and stats["cy"].counted == 0
    with pytest.raises(ValueError, match="not open yet"):
        crowd.submit("ada", list(range(8)), round=5)


def test_a_second_answer_to_a_round_is_refused(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=3)
    crowd.submit("ada", list(range(8)), round=0)
    with pytest.raises(AlreadyRanked, match="'ada' has ranked round 0 already"):
        crowd.submit("ada", list(range(8))[::-1], round=0)
    # Also through another process's view of the same log (its own cache knows nothing).
    other = CrowdSession.join(
        _opt(_task()), task=_task(), log=RoundLog(crowd.log.path), session_id=crowd.session_id
    )
    with pytest.raises(AlreadyRanked):
        other.submit("ada", list(range(8)), round=0)
    assert crowd.status()["ranked"] == 1
    with pytest.raises(ValueError, match="rater name"):
        crowd.submit("", list(range(8)), round=0)
    with pytest.raises(ValueError, match="crowd's own"):
        crowd.submit("consensus", list(range(8)), round=0)


def test_a_rater_who_joins_late_gets_the_current_round(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=2)
    rng = random.Random(0)
    for _ in range(3):
        r = crowd.round
        crowd.submit("ada", _answer(crowd, rng), round=r)
        crowd.submit("bo", _answer(crowd, rng), round=r)
    assert crowd.round == 3
    assert crowd.current().round == 3 and not crowd.has_ranked("zed", 3)
    vote = crowd.submit("zed", _answer(crowd, rng), round=crowd.current().round)
    assert not vote.late and crowd.has_ranked("zed", 3)
    assert crowd.status()["ranked_by"] == ["zed"]


def test_the_round_is_rendered_once_for_every_rater(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=2)
    a, b = crowd.current(), crowd.current()
    assert a is b and crowd.renders == 1 and len(a.items) == a.m
    assert a.items[0].startswith(b"\x89PNG")
    crowd.submit("ada", list(range(8)), round=0)
    crowd.submit("bo", list(range(8)), round=0)
    assert crowd.current().round == 1 and crowd.renders == 2


def _run_rounds(crowd: CrowdSession, rounds: int, seed: int = 0) -> None:
    """Raters of three kinds: two that agree, one random, one contrary; ties and none_better."""
    rng = random.Random(seed)
    for _ in range(rounds):
        shown = crowd.current()
        r = shown.round
        truth = list(range(shown.m))
        rng.shuffle(truth)
        k = shown.k or shown.m
        crowd.submit("ada", truth[:k], round=r, ties=[1] if k > 2 else None)
        if shown.incumbent is not None and rng.random() < 0.3:
            crowd.submit("bo", round=r, none_better=True)
        else:
            crowd.submit("bo", truth[:k], round=r)
        noise = truth[:]
        rng.shuffle(noise)
        crowd.submit("cy", noise[:k], round=r)
        crowd.submit("dee", truth[::-1][:k], round=r)


def test_the_consensus_replays_exactly_from_the_raw_rows(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=4)
    _run_rounds(crowd, 12)
    assert crowd.round == 12
    rows = crowd.log.rounds(crowd.session_id)
    assert [(r.ranking, r.ties) for r in rows] == recompute(crowd.log, crowd.session_id)
    # A replay of the consensus session is the same iterate, bit for bit.
    resumed = Session.resume(_opt(_task()), log=crowd.log, session_id=crowd.session_id)
    assert torch.equal(resumed.optimizer.x, crowd.optimizer.x)
    # So is a crowd joined from the log, weights included.
    joined = CrowdSession.join(
        _opt(_task()), task=_task(), log=crowd.log, session_id=crowd.session_id
    )
    assert torch.equal(joined.optimizer.x, crowd.optimizer.x)
    assert joined.weights.state_dict() == crowd.weights.state_dict()
    # The τ in the log are the ones RaterWeights was given; the contrary rater lost weight.
    replay = RaterWeights()
    for row in rows:
        for (rater, _, _), tau in zip(
            row.meta["crowd"]["votes"], row.meta["crowd"]["taus"], strict=True
        ):
            replay.update(rater, tau)
    assert replay.state_dict() == crowd.weights.state_dict()
    w = {s.rater: s.weight for s in crowd.rater_stats()}
    assert w["dee"] < w["cy"] < w["ada"], w


def test_recompute_reads_the_raw_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    crowd = _crowd(path, raters=2)
    crowd.submit("ada", [0, 1, 2, 3, 4, 5, 6, 7], round=0)
    vote = crowd.submit("bo", [0, 1, 2, 3, 4, 5, 6, 7], round=0)
    (row,) = crowd.log.rounds(crowd.session_id)
    assert recompute(crowd.log, crowd.session_id) == [(row.ranking, row.ties)]
    # Rewrite bo's raw row behind the log's back: the recomputed consensus no longer matches.
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE rounds SET ranking = ? WHERE seq = ?",
            (json.dumps(list(range(8))[::-1]), vote.seq),
        )
    assert recompute(RoundLog(path), crowd.session_id) != [(row.ranking, row.ties)]


def test_two_crowd_processes_on_one_log_stay_in_lockstep(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    clock = Clock()
    a = _crowd(path, raters=3, seconds=20.0, clock=clock)
    b = CrowdSession.join(
        _opt(_task()), task=_task(), log=RoundLog(path), session_id=a.session_id, clock=clock
    )
    rng = random.Random(1)
    for rnd in range(6):
        sa, sb = a.current(), b.current()
        assert sa.round == sb.round == rnd and sa.items == sb.items
        servers = [a, b, a] if rnd % 2 else [b, a, b]
        for name, server in zip(("ada", "bo", "cy"), servers, strict=True):
            if rnd == 3 and name == "cy":
                break  # round 3 closes at T instead
            server.submit(name, _answer(server, rng), round=rnd)
        if rnd == 3:
            clock.now = time.time() + 21.0
        a.poll()
        b.poll()
        assert a.round == b.round == rnd + 1
        assert torch.equal(a.optimizer.x, b.optimizer.x)
    rows = a.log.rounds(a.session_id)
    assert [r.round for r in rows] == list(range(6))
    assert rows[3].meta["crowd"]["closed_by"] == "time"
    assert a.weights.state_dict() == b.weights.state_dict()
    assert [(r.ranking, r.ties) for r in rows] == recompute(a.log, a.session_id)


def test_two_processes_closing_the_same_round_agree_on_the_winner(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    clock = Clock()
    a = _crowd(path, raters=5, seconds=10.0, clock=clock)
    b = CrowdSession.join(
        _opt(_task()), task=_task(), log=RoundLog(path), session_id=a.session_id, clock=clock
    )
    a.submit("ada", list(range(8)), round=0)
    b.submit("bo", list(range(8))[::-1], round=0)
    b.poll()  # b knows both votes; a only its own
    clock.now = time.time() + 11.0
    b.poll()  # b closes with two votes
    a.poll()  # a reads b's row rather than closing with its own view
    assert a.round == b.round == 1
    (row,) = a.log.rounds(a.session_id)
    assert [v[0] for v in row.meta["crowd"]["votes"]] == ["ada", "bo"]
    assert torch.equal(a.optimizer.x, b.optimizer.x)
    # A close attempt that loses the race to the log adopts the winner's row.
    a.submit("ada", list(range(8)), round=1)
    b.poll()
    c = CrowdSession.join(
        _opt(_task()), task=_task(), log=RoundLog(path), session_id=a.session_id, clock=clock
    )
    clock.now = time.time() + 30.0
    a.poll()  # a closes round 1
    c._close_if_due()  # c, which has not read a's row, tries to close round 1 too and loses
    assert c.round == 2 and len(c.log.rounds(c.session_id)) == 2
    assert torch.equal(a.optimizer.x, c.optimizer.x)


def test_joining_while_another_process_closes_a_round_keeps_the_optimizer_in_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round closed between join's replay and its read of the rows is adopted, not skipped."""
    a = _crowd(tmp_path / "log.sqlite", raters=1, seconds=None)
    a.submit("ada", list(range(8)), round=0)
    resume = Session.resume

    def racing(*args: Any, **kw: Any) -> Session:
        out = resume(*args, **kw)
        a.submit("ada", _answer(a, random.Random(0)), round=1)  # a closes round 1 meanwhile
        return out

    monkeypatch.setattr(Session, "resume", staticmethod(racing))
    b = CrowdSession.join(
        _opt(_task()), task=_task(), log=RoundLog(a.log.path), session_id=a.session_id
    )
    monkeypatch.undo()
    assert a.round == b.round == 2
    assert torch.equal(a.optimizer.x, b.optimizer.x)
    assert b.optimizer.round_seed == a.optimizer.round_seed
    assert b.weights.state_dict() == a.weights.state_dict()
    b.submit("bo", _answer(b, random.Random(1)), round=2)  # b closes round 2, as a would
    a.poll()
    assert a.round == b.round == 3 and torch.equal(a.optimizer.x, b.optimizer.x)


def test_a_logged_vote_is_taken_even_when_closing_the_round_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The rater is told their committed vote was taken; the next poll() closes the round."""
    crowd = _crowd(tmp_path / "log.sqlite", raters=1, seconds=None)
    append = crowd.log.append

    def locked(sid: str, **kw: Any) -> Any:
        if sid == crowd.session_id:  # the consensus row, not the vote
            raise sqlite3.OperationalError("database is locked")
        return append(sid, **kw)

    monkeypatch.setattr(crowd.log, "append", locked)
    vote = crowd.submit("ada", list(range(8)), round=0)
    assert not vote.late and vote.round == 0 and crowd.round == 0
    assert "database is locked" in caplog.text and "closing round 0" in caplog.text
    with pytest.raises(AlreadyRanked):
        crowd.submit("ada", list(range(8)), round=0)
    monkeypatch.undo()
    assert crowd.poll() and crowd.round == 1
    (row,) = crowd.log.rounds(crowd.session_id)
    assert row.meta["crowd"]["votes"] == [["ada", vote.row.session_id, vote.seq]]


# ---- the server (HTTP, no browser) -------------------------------------------------------------


def _request(
    server: Any, path: str, body: Any = None, *, rater: str = "ada", token: str | None = None
) -> tuple[int, Any]:
    status, data = rater_request(
        server.url + path,
        token=server.token if token is None else token,
        rater=rater,
        body=body,
        timeout=30,
    )
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def test_the_server_needs_the_token_and_answers_each_rater(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=2, seconds=None)
    server = CrowdServer(crowd, token="s3cret").start()
    try:
        assert server.link == f"http://127.0.0.1:{server.port}/?token=s3cret"
        assert _request(server, "", token="wrong")[0] == 403
        assert _request(server, "api/status", token="")[0] == 403
        status, page = _request(server, "")
        assert status == 200 and b'src="static/crowd.js"' in page
        status, state = _request(server, "api/round")
        assert status == 200 and (state["round"], state["ranked"], state["raters"]) == (0, 0, 2)
        status, png = _request(server, "api/item/0/0")
        assert status == 200 and png == crowd.current().items[0]
        assert _request(server, "api/item/1/0")[0] == 404
        assert _request(server, "api/item/0/" + "9" * 5000)[0] == 404
        order = list(range(8))
        assert _request(server, "api/submit", {"round": 0, "ranking": order})[1]["taken"]
        status, refused = _request(server, "api/submit", {"round": 0, "ranking": order})
        assert status == 409 and "already" in refused["error"]
        status, refused = _request(
            server, "api/submit", {"round": 0, "ranking": [0, 0]}, rater="bo"
        )
        assert status == 400 and "twice" in refused["error"]
        assert _request(server, "api/round", rater="ada")[1]["you_ranked"]
        assert not _request(server, "api/round", rater="bo")[1]["you_ranked"]
        status, taken = _request(server, "api/submit", {"round": 0, "ranking": order}, rater="bo")
        assert status == 200 and not taken["late"]
        deadline = time.monotonic() + 10
        while _request(server, "api/round")[1]["round"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status, late = _request(server, "api/submit", {"round": 0, "ranking": order}, rater="cy")
        assert status == 200 and late["late"]
        status, info = _request(server, "api/status")
        assert info["renders"] == 2 and {r["rater"] for r in info["rater_stats"]} == {
            "ada",
            "bo",
            "cy",
        }
    finally:
        server.stop()


def test_the_server_never_logs_the_token(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Refusals and failures are logged by status, method and path; the query stays out."""
    crowd = _crowd(tmp_path / "log.sqlite", raters=2, seconds=None)
    server = CrowdServer(crowd, token="s3cret").start()
    caplog.set_level("DEBUG")
    try:
        # A 400 that tornado logs with its message (no rater), the token in the query.
        assert _request(server, "api/round?token=s3cret", rater="", token="")[0] == 400

        def broken() -> Any:
            raise RuntimeError("the log went away")

        monkeypatch.setattr(crowd, "status", broken)
        assert _request(server, "api/status?token=s3cret", token="")[0] == 500
    finally:
        server.stop()
    logged = caplog.text + capfd.readouterr().err
    assert "400 GET /api/round" in logged and "no rater" in logged
    assert "500 GET /api/status" in logged and "the log went away" in logged
    assert "s3cret" not in logged


def test_the_token_check_refuses_any_wrong_token_and_keeps_a_good_cookie(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=2, seconds=None)
    server = CrowdServer(crowd, token="s3cret").start()
    cookie = f"labkit_crowd_{server.port}"
    try:
        # A non-ASCII token is a wrong token (403), not a failure of the comparison (500).
        assert _request(server, "?token=%C3%A9", token="")[0] == 403
        assert _request(server, "api/status", token="\u00e9")[0] == 403
        # The link's token is kept as the cookie; a wrong ?token= beside a good cookie is let
        # through by the cookie and leaves it as it was.
        with urllib.request.urlopen(server.link, timeout=30) as reply:
            assert f"{cookie}=s3cret" in reply.headers["Set-Cookie"]
        request = urllib.request.Request(
            server.url + "?token=wrong", headers={"Cookie": f"{cookie}=s3cret"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200
            assert not any(cookie in c for c in reply.headers.get_all("Set-Cookie") or [])
    finally:
        server.stop()


def test_the_server_takes_small_bodies_and_echoes_little_of_them(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=2, seconds=None)
    server = CrowdServer(crowd, token="s3cret").start()
    try:
        # Under the 64 KiB limit: refused by the rules, with the name quoted in a few characters.
        status, refused = _request(server, "api/rater", {"name": "x" * 60_000})
        assert status == 400 and "rater name" in refused["error"] and len(refused["error"]) < 400
        status, refused = _request(server, "api/submit", {"round": 0, "ranking": [0] * 9_000})
        assert status == 400 and len(refused["error"]) <= 300
        # Over it: a bare 400 (or the connection closed while the body was still being sent).
        try:
            status, body = _request(server, "api/rater", {"name": "x" * 2_000_000})
        except (ConnectionError, urllib.error.URLError):
            status, body = 400, b""
        assert status == 400 and len(body) < 400
    finally:
        server.stop()


def test_stopping_answers_the_waiting_pages_and_closes_every_connection(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=2, seconds=None)
    server = CrowdServer(crowd, token="s3cret").start()
    headers = {"Authorization": "token s3cret", "Cookie": "labkit_rater=ada"}
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=5) for _ in "abc"]
    try:
        idle, *waiting = connections
        idle.request("GET", "/api/round", headers=headers)  # answered, then kept alive
        version = json.loads(idle.getresponse().read())["version"]
        for c in waiting:  # long polls: nothing changes, so they wait (up to 20 s)
            c.request("GET", f"/api/round?since={version}", headers=headers)
        time.sleep(0.3)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        for c in waiting:
            reply = c.getresponse()
            assert reply.status == 200 and json.loads(reply.read())["round"] == 0
        for c in connections:  # closed by the server: end of stream, not a timeout
            assert c.sock is None or c.sock.recv(1) == b""
    finally:
        for c in connections:
            c.close()


def test_no_request_is_served_before_the_first_round_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crowd = _crowd(tmp_path / "log.sqlite", raters=2, seconds=None)
    render, ready = crowd.task.render, threading.Event()

    def slow(X: torch.Tensor) -> Any:
        ready.wait(30)
        return render(X)

    monkeypatch.setattr(crowd.task, "render", slow)
    server = CrowdServer(crowd, token="s3cret")
    starting = threading.Thread(target=server.start)
    starting.start()
    replies: list[tuple[int, Any]] = []
    try:
        deadline = time.monotonic() + 10
        while server.port == 0:  # bound, the first round still rendering
            assert time.monotonic() < deadline
            time.sleep(0.01)
        asking = threading.Thread(target=lambda: replies.append(_request(server, "api/round")))
        asking.start()
        time.sleep(0.5)
        ready.set()
        asking.join(30)
        starting.join(30)
        ((status, state),) = replies
        assert status == 200 and state["round"] == 0
    finally:
        ready.set()
        starting.join(30)
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_servers_on_one_log_serve_one_crowd(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Two app servers, two ports, one crowd: a shared file, or a shared PostgreSQL database
    (the issue's case of several machines: each server talks to the database alone)."""
    path: Path | str = tmp_path / "log.sqlite"
    if backend == "postgresql":
        path = request.getfixturevalue("postgres").fresh_log_url()
    a = _crowd(path, raters=4, seconds=None)
    b = CrowdSession.join(_opt(_task()), task=_task(), log=RoundLog(path), session_id=a.session_id)
    servers = [CrowdServer(c, token="t0ken", poll_s=0.05).start() for c in (a, b)]
    try:
        assert servers[0].port != servers[1].port
        rng = random.Random(3)
        for rnd in range(3):
            for i, name in enumerate(("ada", "bo", "cy", "dee")):
                server = servers[i % 2]
                state = _request(server, "api/round", rater=name)[1]
                assert state["round"] == rnd, (name, state)
                order = list(range(state["m"]))
                rng.shuffle(order)
                body = {"round": rnd, "ranking": order[: state["k"] or state["m"]]}
                assert _request(server, "api/submit", body, rater=name)[0] == 200
            deadline = time.monotonic() + 10
            while {_request(s, "api/round")[1]["round"] for s in servers} != {rnd + 1}:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert torch.equal(a.optimizer.x, b.optimizer.x)
        assert len(a.log.rounds(a.session_id)) == 3
        rows = a.log.rounds(a.session_id)
        assert [len(r.meta["crowd"]["votes"]) for r in rows] == [4, 4, 4]
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("app", ["quickstart", "digits"])
def test_the_apps_crowds_build_and_a_second_server_joins_them(tmp_path: Path, app: str) -> None:
    path = tmp_path / "log.sqlite"
    crowd = build_crowd(app, log=path, raters=1, round_seconds=None)
    shown = crowd.current()
    assert shown.items[0].startswith(b"\x89PNG") and crowd.renders == 1
    crowd.submit("ada", list(range(shown.m))[: shown.k or shown.m], round=0)
    assert crowd.round == 1
    other = build_crowd(
        app, log=RoundLog(path), raters=1, round_seconds=None, join=crowd.session_id
    )
    assert torch.equal(other.optimizer.x, crowd.optimizer.x) and other.round == 1
    with pytest.raises(ValueError, match="not a crowd of app"):
        build_crowd(
            "digits" if app == "quickstart" else "quickstart",
            log=path,
            raters=1,
            round_seconds=None,
            join=crowd.session_id,
        )
