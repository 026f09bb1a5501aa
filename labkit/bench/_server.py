"""A server run as a process for a while — ``labkit app``, Voilà, JupyterLab — and always stopped.

One implementation for the benchmarks that meet a real server (latency, load, crowd) and for the
browser tests (``tests/browser/conftest.py``): the server starts in a process group of its own
(``start_new_session``) with its output in a log file; :meth:`ServerProcess.stop` ends it and
everything below it, whatever state it is in. Jupyter kernels run in process groups of their own,
so stopping the server's group is not enough: the processes that descended from it are found
(psutil) and killed each by its id, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from labkit.app import printed_link
from labkit.bench._common import CHROMIUM, CHROMIUM_FLAGS

#: Seconds between two looks at a starting server (its log, or its port).
_POLL_S = 0.1


class ServerError(RuntimeError):
    """A server exited, or did not come up in time; the message ends with its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Ids of every living process below ``pid`` (children, grandchildren, ...)."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class ServerProcess:
    """``argv`` started in a process group of its own, listening (once up) on ``port``.

    Args:
        argv: the command line.
        port: where it will listen on 127.0.0.1.
        log: where its stdout and stderr go (read back for the link and for error messages).
        env: its environment; default this process's, less ``JUPYTER_TOKEN`` (a server must
            make its own token, not inherit one).
        cwd: its working directory; default this process's.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        if env is None:
            env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        #: The tokened link ``labkit app`` printed (set by :meth:`wait_for_link`).
        self.link = ""
        self.log_path = log
        # The child keeps its own descriptor of the log; ours is closed at once.
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, signalled as one at stop
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of the server's output ("" if there is no log)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _fail(self, what: str) -> ServerError:
        return ServerError(f"{what}; the end of {self.log_path}:\n{self.log_tail()}")

    def wait_listening(self, timeout: float) -> None:
        """Return once the port accepts connections; :class:`ServerError` if the server exits
        first or is not listening within ``timeout`` seconds.

        Only a TCP connect, no HTTP request: a GET of Voilà's page would start a kernel.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._fail(f"the server exited with {self.proc.returncode} before listening")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0),
            ):
                return
            time.sleep(_POLL_S)
        raise self._fail(f"no server listening on {self.url} after {timeout:.0f} s")

    def wait_for_link(self, timeout: float) -> str:
        """The tokened link ``labkit app`` prints once its server answers (also kept as
        :attr:`link`); :class:`ServerError` if the command exits first or prints none within
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            link = printed_link(self.log_tail(chars=1_000_000))
            if link is not None:
                self.link = link
                return link
            if self.proc.poll() is not None:
                raise self._fail(
                    f"labkit app exited with {self.proc.returncode} before printing its link"
                )
            time.sleep(_POLL_S)
        raise self._fail(f"labkit app printed no link after {timeout:.0f} s")

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the group (``labkit app`` stops Voilà, which shuts its kernels down; a
        crowd server stops itself), up to ``grace_s`` seconds for it to exit, then SIGKILL for
        the group and for every process that was or is below it."""
        below = descendants(self.proc.pid)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        for pid in below + descendants(self.proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(below)


def _wait_gone(pids: Sequence[int], timeout: float = 10.0) -> None:
    """Wait until each of ``pids`` has exited: a SIGKILL is delivered, not yet acted on, when
    ``kill`` returns. A zombie counts as gone (it holds no memory and no port; only its parent,
    which may be a container's init that never reaps, can remove it)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)


@contextlib.contextmanager
def running_server(
    argv: Sequence[str],
    *,
    port: int,
    log: Path,
    wait: Callable[[ServerProcess], object],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[ServerProcess]:
    """Start ``argv`` (:class:`ServerProcess`), ``wait`` until it is up, yield it, and stop it
    whatever happened."""
    server = ServerProcess(argv, port=port, log=log, env=env, cwd=cwd)
    try:
        wait(server)
        yield server
    finally:
        server.stop()


def labkit_server(
    args: Sequence[str], *, log: Path, start_timeout_s: float = 300.0
) -> contextlib.AbstractContextManager[ServerProcess]:
    """``labkit app ARGS`` on a free port, up once it printed its tokened link
    (``server.link``); stopped whatever happens."""
    port = free_port()
    cmd = [sys.executable, "-m", "labkit", "app", *args, f"--port={port}", "--no-browser"]
    return running_server(
        cmd, port=port, log=log, wait=lambda server: server.wait_for_link(start_timeout_s)
    )


@dataclass(frozen=True)
class VoilaLimits:
    """How many visitors' kernels ``labkit app`` (Voilà) holds: its ``--max-kernels``,
    ``--cull-after`` (seconds idle) and ``--pool-size`` (warm spare kernels)."""

    max_kernels: int
    cull_after: int
    pool_size: int

    def args(self) -> list[str]:
        """The options of ``labkit app`` that set these limits."""
        limits = [f"--max-kernels={self.max_kernels}", f"--cull-after={self.cull_after}"]
        return [*limits, f"--pool-size={self.pool_size}"]


def labkit_app(
    app: str, *, db: Path, log: Path, limits: VoilaLimits, start_timeout_s: float = 300.0
) -> contextlib.AbstractContextManager[ServerProcess]:
    """``labkit app APP`` (Voilà) with its round log at ``db``, as :func:`labkit_server`."""
    return labkit_server(
        [app, f"--db={db}", *limits.args()], log=log, start_timeout_s=start_timeout_s
    )


# ---- the browser that visits it ----------------------------------------------------------------


def chromium_missing(prog: str) -> bool:
    """Whether Debian's chromium is missing; if so, says so on stderr as ``prog``'s error."""
    if Path(CHROMIUM).exists():
        return False
    print(f"{prog}: error: needs Debian's chromium at {CHROMIUM}", file=sys.stderr)
    return True


def launch_chromium(browser_type: Any) -> Any:
    """Debian's chromium, headless with :data:`CHROMIUM_FLAGS`, launched by Playwright's
    ``browser_type`` (``playwright.chromium``: of the sync API, a browser; of the async API, an
    awaitable of one)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"this benchmark needs Debian's chromium at {CHROMIUM}")
    return browser_type.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS), headless=True)
