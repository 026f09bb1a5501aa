"""The server behind ``labkit app NAME --crowd``: one process, one model, any number of raters.

A crowd is not served by Voilà: one kernel per visitor would run the model once per rater. This
server holds the task, the model and the optimizer (a :class:`~labkit.crowd.CrowdSession`),
renders each round once and hands the same bytes to every rater over HTTP (tornado):

==================================== ===========================================================
``GET  {base}``                      the rater page (``static/crowd.html``): a name field, "3 of
                                     5 have ranked", and the ranking widget's own front end
                                     (``static/ranker.js``) driven by ``static/crowd.js``
``GET  {base}operator``              the operator page: per rater τ, weight, rounds, late answers
``GET  {base}api/round?since=V``     the open round as JSON; waits (long poll, up to 20 s) while
                                     the state is still version V
``GET  {base}api/item/ROUND/I``      candidate I of the open round (its encoded bytes)
``POST {base}api/submit``            ``{"round", "ranking", "ties"?, "none_better"?}``: 200
                                     ``{"taken": true, "late": bool}`` once logged; 409 when the
                                     rater had ranked that round; 400 for a bad answer
``POST {base}api/rater``             ``{"name"}``: rank under this name from now on
``GET  {base}api/status``            the crowd's status (:meth:`CrowdSession.status`), as JSON
==================================== ===========================================================

**Token.** Every request needs the token: ``?token=`` in the link (the page then sets a cookie,
``labkit_crowd_<port>``, so the page's own requests carry it), the cookie, or an
``Authorization: token ...`` header. Anything else is a short 403. The server's log lines
name a request by its method and path, never its query. The server listens on
127.0.0.1 unless told otherwise; ``labkit app --crowd`` prints the link once the server answers.

**Raters.** A rater is a name: the page's name field, or a random ``rater-xxxxxx`` the server
puts in the ``labkit_rater`` cookie on the first visit (so a reload is the same rater). Two
people who type the same name are one rater to the crowd: pick distinct names.

**Threads.** Tornado's loop answers requests; every call into the crowd (the log, the model)
runs on one worker thread, in order, so a round being rendered never blocks a page from
loading. The loop polls the crowd every ``poll_s`` (votes and rows of other processes, the T
deadline) and wakes the waiting pages when anything changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import hashlib
import hmac
import json
import secrets
import signal
import sys
import threading
import time
import urllib.request
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import tornado.httpserver
import tornado.ioloop
import tornado.locks
import tornado.log
import tornado.netutil
import tornado.web

from labkit.crowd import AlreadyRanked, CrowdRound, CrowdSession, check_rater
from labkit.optim.base import RankOptimizer

__all__ = ["CROWD_APPS", "CrowdServer", "build_crowd", "main_crowd"]

_STATIC = Path(__file__).resolve().parent / "widgets" / "static"
#: Files the pages load, and their types.
_FILES = {
    "ranker.js": "text/javascript; charset=utf-8",
    "ranker.css": "text/css; charset=utf-8",
    "crowd.js": "text/javascript; charset=utf-8",
    "crowd.css": "text/css; charset=utf-8",
}
#: Seconds a long poll waits for a change before it answers with the same state.
_LONG_POLL_S = 20.0
#: A rater counts as connected while their page has asked for the round this recently.
_CONNECTED_S = 30.0
_RATER_COOKIE = "labkit_rater"
#: The largest request body taken (a rater's answer is a few hundred bytes); larger is a 400.
_MAX_BODY = 64 * 1024
#: An error sent back to a page is cut to this many characters (it may quote the input).
_ERROR_CHARS = 300


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


# ---- the apps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrowdApp:
    """What a crowd ranks: its title, one line of instructions, and how to build task+optimizer
    (``build(seed)``; the same seed builds the same optimizer, which is how a second server
    joins)."""

    title: str
    instructions: str
    build: Callable[[int | None], tuple[Any, RankOptimizer]]
    tile_px: int = 128


def _quickstart(seed: int | None) -> tuple[Any, RankOptimizer]:
    # The quickstart app's task and start (labkit.apps.quickstart), its optimizer from defaults.
    from labkit.defaults import make_optimizer
    from labkit.tasks.functions import FunctionTask

    task = FunctionTask("sphere", image_size=128)
    return task, make_optimizer(task, task.x0(seed=0), seed=seed)


def _digits(seed: int | None) -> tuple[Any, RankOptimizer]:
    # The digits app's default start (labkit.apps.digits): "any digit", one UNet pass a step.
    from labkit.defaults import make_optimizer
    from labkit.models.digits import load_digits_model
    from labkit.tasks.diffusion import DigitsTask

    task = DigitsTask(0, condition=None, guidance=1.0, image_px=128, model=load_digits_model())
    return task, make_optimizer(task, task.x0(seed=1), seed=seed)


CROWD_APPS: dict[str, CrowdApp] = {
    "quickstart": CrowdApp(
        "Steer a point together",
        "Drag the maps into order, the red dot closest to the white cross first, then press "
        "Submit ranking. The round moves on once enough of you have ranked it.",
        _quickstart,
    ),
    "digits": CrowdApp(
        "Steer the digits model together",
        "Drag the images into order, the one closest to the digit you were asked to steer to "
        "first, then press Submit ranking. The round moves on once enough of you have ranked it.",
        _digits,
    ),
}


def build_crowd(
    app: str,
    *,
    log: Any,
    raters: int,
    round_seconds: float | None,
    join: str | None = None,
) -> CrowdSession:
    """A new crowd of app ``app`` in ``log``, or (``join``) the existing crowd of that id."""
    if app not in CROWD_APPS:
        raise ValueError(f"no crowd for app {app!r}; crowds exist for: {', '.join(CROWD_APPS)}")
    spec = CROWD_APPS[app]
    if join is None:
        task, opt = spec.build(None)  # a fresh seed from the OS, logged with the session
        return CrowdSession(
            opt,
            task=task,
            log=log,
            raters=raters,
            round_seconds=round_seconds,
            name=f"crowd-{app}",
            meta={"app": app},
        )
    from labkit.roundlog import RoundLog

    store = log if isinstance(log, RoundLog) else RoundLog(log)
    meta = store.session_meta(join)
    config = meta.get("crowd_config")
    if not isinstance(config, dict) or config.get("app") != app:
        raise ValueError(f"session {join!r} is not a crowd of app {app!r}")
    task, opt = spec.build(meta["seed"])
    return CrowdSession.join(opt, task=task, log=store, session_id=join)


# ---- the server --------------------------------------------------------------------------------


def _display_seed(session_id: str, round_id: int, rater: str) -> int:
    """Each rater sees the round in an order of their own (position bias then averages out)."""
    digest = hashlib.sha256(f"{session_id}/{round_id}/{rater}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class CrowdServer:
    """Serve ``crowd`` over HTTP on ``ip:port`` (0: a free port) behind ``token``.

    :meth:`start` binds and serves on a thread of its own and returns at once; :meth:`stop`
    stops it. ``link`` is the rater link with the token, ``operator_link`` the operator's.
    """

    def __init__(
        self,
        crowd: CrowdSession,
        *,
        token: str,
        title: str = "Rank together",
        instructions: str = "Drag the candidates into order, best first, then press Submit.",
        tile_px: int = 128,
        ip: str = "127.0.0.1",
        port: int = 0,
        base_url: str = "/",
        poll_s: float = 0.25,
    ) -> None:
        if not token:
            raise ValueError("the crowd server needs a token")
        self.crowd = crowd
        self.token = token
        self.title = title
        self.instructions = instructions
        self.tile_px = tile_px
        self.ip = ip
        self.base_url = base_url
        self.poll_s = poll_s
        self.port = port
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="labkit-crowd")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self._version = 0
        self._shown: CrowdRound | None = None
        self._cond: tornado.locks.Condition | None = None
        self._refreshing = False
        self._closing = False  # stop() has begun: long polls answer at once
        self._waiting = 0  # long polls waiting for a change
        self._seen: dict[str, float] = {}  # rater -> when their page last asked for the round

    # -- links ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.ip in ("0.0.0.0", "::", "") else self.ip
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{self.base_url}"

    @property
    def link(self) -> str:
        return f"{self.url}?token={self.token}"

    @property
    def operator_link(self) -> str:
        return f"{self.url}operator?token={self.token}"

    # -- life -------------------------------------------------------------------------------------
    def start(self) -> CrowdServer:
        """Bind (so ``port`` is known), render the first round, serve on a thread; return self."""
        sockets = tornado.netutil.bind_sockets(self.port, address=self.ip)
        self.port = int(sockets[0].getsockname()[1])
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._cond = tornado.locks.Condition()
                self._server = tornado.httpserver.HTTPServer(
                    self._application(), max_body_size=_MAX_BODY
                )
                loop.run_until_complete(self.refresh())
                # Only now: a request served before the first state exists would fail on it.
                self._server.add_sockets(sockets)
                poller = tornado.ioloop.PeriodicCallback(self._tick, self.poll_s * 1000)
                poller.start()
            except BaseException as exc:  # reported to start()'s caller
                for sock in sockets:
                    sock.close()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                poller.stop()
                loop.close()
                self._stopped.set()

        self._thread = threading.Thread(target=run, name="labkit-crowd-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving: pages waiting on a long poll get the state, then every connection is
        closed; idempotent."""
        with self._stop_lock:
            loop, self._loop = self._loop, None
        if loop is None or self._thread is None:
            return

        async def halt() -> None:
            try:
                if self._server is not None:
                    self._server.stop()  # no new connections
                # The pages waiting on a long poll get the state now (a request arriving from
                # here on does not wait), then every connection, open or idle, is closed.
                self._closing = True
                if self._cond is not None:
                    self._cond.notify_all()
                deadline = time.monotonic() + 2.0
                while self._waiting and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                if self._server is not None:
                    await self._server.close_all_connections()
            finally:
                loop.stop()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(halt(), loop)
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)

    def wait(self) -> None:
        """Block until :meth:`stop` (from a signal handler or another thread)."""
        while not self._stopped.wait(0.5):
            pass

    # -- the state pages read ---------------------------------------------------------------------
    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the crowd's worker thread (one at a time, in order)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def refresh(self) -> None:
        """Poll the crowd, render its open round if new, and wake the pages if anything changed."""
        self._refreshing = True
        try:

            def work() -> tuple[CrowdRound, dict[str, Any]]:
                self.crowd.poll()
                shown = self.crowd.current()
                return shown, self.crowd.status()

            shown, status = await self.run(work)
        finally:
            self._refreshing = False
        if status["round"] != shown.round:
            return  # closed meanwhile: the next tick renders the next round
        state = {
            "round": shown.round,
            "m": shown.m,
            "k": shown.k,
            "incumbent": shown.incumbent,
            "kind": shown.kind,
            "mime": shown.mime,
            "ranked": status["ranked"],
            "ranked_by": status["ranked_by"],
            "raters": status["raters"],
            "round_seconds": status["round_seconds"],
            "closes_at": status["closes_at"],
        }
        if state != self._state:
            self._state = state
            self._shown = shown
            self._version += 1
            assert self._cond is not None
            self._cond.notify_all()

    async def _tick(self) -> None:
        if not self._refreshing:
            await self.refresh()

    def rater_view(self, rater: str) -> dict[str, Any]:
        """The state as one rater's page gets it (their display order, whether they ranked)."""
        s = self._state
        return {
            **{k: v for k, v in s.items() if k != "ranked_by"},
            "version": self._version,
            "seed": _display_seed(self.crowd.session_id, s["round"], rater),
            "you_ranked": rater in s["ranked_by"],
            "rater": rater,
            "server_time": time.time(),
        }

    def connected(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self._seen.values() if now - t < _CONNECTED_S)

    def _application(self) -> tornado.web.Application:
        b = self.base_url
        args = {"server": self}
        return tornado.web.Application(
            [
                (b, _PageHandler, {**args, "page": "crowd.html"}),
                (b + "operator", _PageHandler, {**args, "page": "operator.html"}),
                (b + r"static/([a-z]+\.(?:js|css))", _FileHandler, args),
                (b + "api/round", _RoundHandler, args),
                # Bounded: int() of a number of thousands of digits is an error (a 500), not a 404.
                (b + r"api/item/(\d{1,9})/(\d{1,6})", _ItemHandler, args),
                (b + "api/submit", _SubmitHandler, args),
                (b + "api/rater", _RaterHandler, args),
                (b + "api/status", _StatusHandler, args),
            ],
            default_handler_class=_NotFound,
            default_handler_args=args,
            log_function=_log_request,
        )


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Refusals and failures only, and never the query (it may hold the token)."""
    status = handler.get_status()
    if status >= 400:
        request = handler.request
        print(f"{status} {request.method} {request.path}", file=sys.stderr, flush=True)


class _Base(tornado.web.RequestHandler):
    server: CrowdServer

    def initialize(self, server: CrowdServer, **_: Any) -> None:
        self.server = server

    @property
    def _cookie(self) -> str:
        return f"labkit_crowd_{self.server.port}"

    def prepare(self) -> None:
        token = self.server.token.encode()

        def matches(candidate: str) -> bool:
            # As bytes: compare_digest refuses a str with non-ASCII characters (a TypeError).
            return bool(candidate) and hmac.compare_digest(candidate.encode(), token)

        given = self.get_query_argument("token", "")
        if matches(given):
            # Only the link's token becomes the cookie: a wrong ?token= never replaces a good one.
            self.set_cookie(self._cookie, given, httponly=True, samesite="Strict")
        else:
            from_header = self.request.headers.get("Authorization", "").removeprefix("token ")
            if not (matches(self.get_cookie(self._cookie, "")) or matches(from_header)):
                raise tornado.web.HTTPError(403)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "SAMEORIGIN")

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Tornado's, with the method and path in place of the URI (its query may hold the
        token, which must never reach the server's log)."""
        where = f"{self.request.method} {self.request.path}"
        if isinstance(value, tornado.web.HTTPError):
            if value.log_message:
                message = value.log_message % value.args if value.args else value.log_message
                tornado.log.gen_log.warning("%d %s: %s", value.status_code, where, message)
        else:
            tornado.log.app_log.error("Uncaught exception %s", where, exc_info=value)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        text = {
            403: "This crowd needs its full link, with the token: ask whoever started it.",
            404: "There is nothing here.",
        }.get(status_code, "Something went wrong on the server.")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text + "\n")

    def rater(self) -> str:
        """The rater this request is from: the ``labkit_rater`` cookie (a page sets it)."""
        name = self.get_cookie(_RATER_COOKIE, "")
        try:
            return check_rater(name)
        except ValueError:
            raise tornado.web.HTTPError(400, "no rater: open the page first") from None

    def json(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.request.body or b"{}")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            self.json(400, {"error": "the request body must be a JSON object"})
            raise tornado.web.Finish()
        return value


class _NotFound(_Base):
    def prepare(self) -> None:
        super().prepare()
        raise tornado.web.HTTPError(404)


class _PageHandler(_Base):
    def initialize(self, server: CrowdServer, page: str = "crowd.html", **_: Any) -> None:
        super().initialize(server)
        self.page = page

    def get(self) -> None:
        if not check_rater_cookie(self.get_cookie(_RATER_COOKIE, "")):
            self.set_cookie(_RATER_COOKIE, f"rater-{secrets.token_hex(3)}", samesite="Strict")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish((_STATIC / self.page).read_bytes())


def check_rater_cookie(value: str) -> bool:
    try:
        check_rater(value)
    except ValueError:
        return False
    return True


class _FileHandler(_Base):
    def get(self, name: str) -> None:
        if name not in _FILES:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", _FILES[name])
        self.finish((_STATIC / name).read_bytes())


class _RoundHandler(_Base):
    async def get(self) -> None:
        server = self.server
        rater = self.rater()
        since = self.get_query_argument("since", "")
        server._seen[rater] = time.monotonic()
        server._waiting += 1
        try:
            if since == str(server._version) and server._cond and not server._closing:
                await server._cond.wait(timeout=datetime.timedelta(seconds=_LONG_POLL_S))
            server._seen[rater] = time.monotonic()
            view = server.rater_view(rater)
            view["title"] = server.title
            view["instructions"] = server.instructions
            view["tile_px"] = server.tile_px
            self.json(200, view)
        finally:
            server._waiting -= 1


class _ItemHandler(_Base):
    def get(self, round_id: str, index: str) -> None:
        shown = self.server._shown
        if shown is None or shown.round != int(round_id) or int(index) >= shown.m:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", shown.mime)
        self.finish(shown.items[int(index)])


class _SubmitHandler(_Base):
    async def post(self) -> None:
        rater = self.rater()
        body = self.body()
        crowd = self.server.crowd
        rnd: Any = body.get("round")  # checked by submit()
        try:
            vote = await self.server.run(
                lambda: crowd.submit(
                    rater,
                    body.get("ranking"),
                    round=rnd,
                    ties=body.get("ties"),
                    none_better=body.get("none_better", False) is True,
                )
            )
        except AlreadyRanked as exc:
            self.json(409, {"error": _short(exc)})
            return
        except ValueError as exc:
            self.json(400, {"error": _short(exc)})
            return
        # Taken (committed): say so now, then close/render/wake the pages.
        self.json(200, {"taken": True, "late": vote.late, "round": vote.round, "seq": vote.seq})
        tornado.ioloop.IOLoop.current().spawn_callback(self.server.refresh)


class _RaterHandler(_Base):
    def post(self) -> None:
        try:
            name = check_rater(self.body().get("name"))
        except ValueError as exc:
            self.json(400, {"error": _short(exc)})
            return
        self.set_cookie(_RATER_COOKIE, name, samesite="Strict")
        self.json(200, {"rater": name})


class _StatusHandler(_Base):
    async def get(self) -> None:
        server = self.server
        status = await server.run(server.crowd.status)
        now = time.monotonic()
        for row in status["rater_stats"]:
            seen = server._seen.get(row["rater"])
            row["connected"] = seen is not None and now - seen < _CONNECTED_S
        status["connected"] = server.connected()
        status["server_time"] = time.time()
        self.json(200, status)


# ---- `labkit app NAME --crowd` -----------------------------------------------------------------


def _answers(url: str, token: str) -> bool:
    request = urllib.request.Request(
        url + "api/status", headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def main_crowd(
    app: str,
    *,
    db: str,
    db_shown: str,
    ip: str,
    port: int,
    base_url: str,
    raters: int,
    round_seconds: float | None,
    join: str | None,
    open_browser: bool,
    threads: int,
) -> int:
    """Run a crowd of ``app`` until Ctrl+C or SIGTERM; print its links once it answers."""
    import torch

    torch.set_num_threads(threads)
    prog = f"labkit app {app} --crowd"
    spec = CROWD_APPS[app]
    print(f"{prog}: starting on {ip}:{port} (round log: {db_shown}) ...", flush=True)
    crowd = build_crowd(app, log=db, raters=raters, round_seconds=round_seconds, join=join)
    server = CrowdServer(
        crowd,
        token=secrets.token_hex(24),
        title=spec.title,
        instructions=spec.instructions,
        tile_px=spec.tile_px,
        ip=ip,
        port=port,
        base_url=base_url,
    ).start()
    previous = signal.signal(
        signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start()
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(server.url, server.token):
            if time.monotonic() > deadline:
                print(f"{prog}: the server did not answer; stopping", file=sys.stderr)
                return 1
            time.sleep(0.1)
        print(server.link, flush=True)
        print(f"{prog}: operator page: {server.operator_link}", flush=True)
        print(
            f"{prog}: crowd session {crowd.session_id}; a round closes at {crowd.raters} "
            f"rankings or {crowd.round_seconds} s after its first; another server joins with "
            f"--crowd {crowd.session_id} --db <the same log>",
            flush=True,
        )
        if open_browser:
            webbrowser.open(server.link)
        server.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
