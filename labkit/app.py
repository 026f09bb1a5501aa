"""`labkit app` and `labkit lab`: the notebooks as people meet them.

``labkit app [NAME]`` serves one app notebook (``notebooks/apps/NAME.ipynb``) with Voilà, through
:mod:`labkit._voila`, and prints its link, with a fresh random token, on a line of its own once
the server answers (and opens it unless ``--no-browser``)::

    http://127.0.0.1:8866/?token=3f9c...

A request without the token is refused (403) and starts nothing. Kernels are preheated (the
notebook has already run when a visitor arrives) and every visitor gets a kernel of their own,
hence a session of their own: their rows in the shared round log carry their own session id.
``--max-kernels`` caps the visitors holding a kernel (the next one reads "the app is full, try
again shortly", HTTP 503); ``--cull-after`` shuts down the kernels of pages closed or silent for
that long. The server listens on 127.0.0.1; ``--ip ADDR`` or ``--public`` (all interfaces)
publish it with the same token and limits, ``--base-url`` puts it under a path prefix for a
reverse proxy.

Kernels read their settings from the environment: ``LABKIT_DB`` (the round log: ``--db``, else
``$LABKIT_DB`` as given, else a file in the user data folder; a file or a ``postgresql://`` URL),
``LABKIT_THREADS`` (compute threads per kernel, ``--threads``; ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` are set to the same, so one visitor's kernel, or the pool's refill, cannot
starve another's on a small machine) and, for the pipeline app, ``LABKIT_PIPELINE``
(``--pipeline``).

``labkit lab`` opens JupyterLab on the notebooks. In a source checkout that is ``notebooks/``; in
an installed wheel the notebooks ship inside the package and are first copied to a writable
folder under the user's data directory (never overwriting a copy the user has edited).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from labkit._log_target import URL_RE, is_database_url, redact_url
from labkit.cli import option_keywords

__all__ = ["APPS", "App", "main_app", "main_lab", "notebooks_dir"]


@dataclass(frozen=True)
class App:
    """An app: its name, its notebook (relative to :func:`notebooks_dir`), one line about it,
    and whether it needs ``--pipeline``."""

    name: str
    notebook: str
    summary: str
    needs_pipeline: bool = False


#: The apps, by name; the first is the default (it needs no internet and no GPU).
APPS: dict[str, App] = {
    a.name: a
    for a in (
        App("digits", "apps/digits.ipynb", "steer the embedded digits diffusion model by ranking"),
        App("quickstart", "apps/quickstart.ipynb", "rank points of a 2-D function, watch the path"),
        App("control", "apps/control.ipynb", "rank rollouts of a control policy"),
        App(
            "pipeline",
            "apps/pipeline.ipynb",
            "the digits app over a diffusers pipeline folder (needs --pipeline PATH)",
            needs_pipeline=True,
        ),
    )
}
DEFAULT_APP = "digits"

#: Defaults sized for a 2-core, 24 GiB machine: a kernel of the digits app holds about 0.5 GiB.
DEFAULT_MAX_KERNELS = 8
DEFAULT_CULL_AFTER_S = 600
#: How long `labkit app` waits for the server to answer before it gives up.
READY_TIMEOUT_S = 120.0
#: How the token reaches the server (``labkit._voila.TOKEN_ENV``; that module is not imported
#: here: it imports Voilà).
TOKEN_ENV = "LABKIT_APP_TOKEN"
#: Addresses that mean "every interface": the printed link uses 127.0.0.1 instead.
_ANY = ("0.0.0.0", "::", "")


def notebooks_dir() -> Path:
    """The folder of the shipped notebooks: inside the package (wheel) or the checkout's."""
    packaged = Path(__file__).resolve().parent / "notebooks"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "notebooks"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"labkit's notebooks are missing: looked in {packaged} and {checkout}; reinstall labkit"
    )


def _free(port: int, ip: str) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _default_db() -> Path | str:
    from labkit.session import default_log_path

    return default_log_path()


def _log_target(given: str | None) -> tuple[str, str]:
    """The round log the kernels get as ``LABKIT_DB``, and how to name it on screen.

    ``--db``, else ``$LABKIT_DB``, else the user's default file. A ``postgresql://`` URL passes
    through unchanged (its password, if any, is never printed); a path is made absolute, its
    folder created. Any other URL is a ValueError.
    """
    target = given if given is not None else _default_db()
    if is_database_url(target):
        return target, redact_url(target)
    if isinstance(target, str) and URL_RE.match(target):
        raise ValueError(
            f"the round log is a file or a postgresql:// URL; got {redact_url(target)!r}"
        )
    path = Path(target).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path), str(path)


def _base_url(text: str) -> str:
    """argparse type: a URL path prefix, normalized to ``/prefix/``."""
    if "?" in text or "#" in text or "://" in text or " " in text:
        raise argparse.ArgumentTypeError(f"expected a path like /labkit/; got {text!r}")
    parts = [part for part in text.split("/") if part]
    return "/" + "".join(f"{part}/" for part in parts)


def voila_command(
    app: App,
    *,
    port: int,
    ip: str = "127.0.0.1",
    base_url: str = "/",
    pool_size: int = 1,
    max_kernels: int = DEFAULT_MAX_KERNELS,
    cull_after: int = DEFAULT_CULL_AFTER_S,
) -> list[str]:
    """The command line that serves ``app`` with :mod:`labkit._voila` on ``ip:port``.

    The token is not on it: :func:`main_app` passes it in the environment (:data:`TOKEN_ENV`).
    """
    notebook = notebooks_dir() / app.notebook
    if not notebook.is_file():
        raise FileNotFoundError(f"the notebook of app {app.name!r} is missing: {notebook}")
    # Idle kernels are looked for every quarter of the timeout, at most every minute.
    cull_interval = max(1, min(60, cull_after // 4))
    return [
        sys.executable,
        # Run as a file, not `-m labkit._voila`: the server needs Voilà, not labkit and torch.
        str(Path(__file__).resolve().with_name("_voila.py")),
        str(notebook),
        f"--port={port}",
        # Exactly this port or an error: never another one than the URL labkit printed.
        "--Voila.port_retries=0",
        f"--Voila.ip={ip}",
        f"--Voila.base_url={base_url}",
        # labkit opens the browser itself, with the token, once the server answers.
        "--no-browser",
        "--theme=light",
        # Preheated kernels: the notebook has run before a visitor arrives, one kernel each.
        "--preheat_kernel=True",
        f"--pool_size={pool_size}",
        # The spare kernel handed to a visitor is replaced only after _REFILL_DELAY_S: started at
        # once (Voilà's 1 s), its set-up takes a core while the visitor's browser loads the page,
        # and the arrival is slower by a second on two cores (docs/benchmarks.md).
        f"--VoilaKernelManager.fill_delay={_REFILL_DELAY_S}",
        f"--LabkitVoila.max_kernels={max_kernels}",
        # A visitor sees "there was an error", never a traceback with paths in it.
        "--VoilaConfiguration.show_tracebacks=False",
        # The page skips front ends no app uses: plotly's alone is 4.8 MB of JavaScript that
        # every visitor's browser fetched and parsed before the first round; pygments colours
        # code, and an app shows none.
        "--VoilaConfiguration.extension_denylist="
        + json.dumps(list(_UNUSED_EXTENSIONS), separators=(",", ":")),
        # Kernels of closed pages, and of open pages that sent nothing for `cull_after` seconds,
        # are shut down (Voilà's manager never culls its preheated pool).
        f"--MappingKernelManager.cull_idle_timeout={cull_after}",
        f"--MappingKernelManager.cull_interval={cull_interval}",
        "--MappingKernelManager.cull_connected=True",
    ]


#: Seconds between a visitor taking the preheated kernel and the pool starting its replacement.
#: Longer than a visitor's page takes to load and connect (2-3 s here), short enough that the
#: next visitor rarely finds the pool empty.
_REFILL_DELAY_S = 6

#: Installed JupyterLab extensions an app's page does not load (see :func:`voila_command`).
_UNUSED_EXTENSIONS = ("jupyterlab-plotly", "jupyterlab_pygments")


def app_url(*, ip: str, port: int, base_url: str, token: str) -> str:
    """The link a visitor opens: ``http://HOST:PORT/BASE/?token=TOKEN``."""
    host = "127.0.0.1" if ip in _ANY else (f"[{ip}]" if ":" in ip else ip)
    return f"http://{host}:{port}{base_url}?token={token}"


#: The link line `labkit app` prints once its server answers (a line of its own).
_LINK = re.compile(r"^(https?://\S+/)\?token=([0-9a-f]+)$", re.MULTILINE)


def printed_link(output: str) -> str | None:
    """The tokened link in what ``labkit app`` printed so far, or None while it is starting.

    For whoever runs ``labkit app`` as a process (the browser tests, the latency benchmark):
    the link is printed only once the server answers, so finding it means the app is up.
    """
    found = _LINK.search(output)
    return found.group(0) if found else None


def server_status(url: str, *, timeout: float = 2.0) -> dict[str, int]:
    """The server's ``labkit/status`` (kernel counts), given the app's tokened ``url``."""
    base, _, token = url.partition("?token=")
    request = urllib.request.Request(
        base + "labkit/status", headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return dict(json.loads(reply.read()))


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    """True once the server answers at ``url``; False if it exited or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError, ValueError):
            server_status(url, timeout=2.0)
            return True
        time.sleep(0.25)
    return False


def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Serve a labkit app with Voilà on 127.0.0.1 (or --ip/--public), behind a random "
            "token: the link is printed once the server answers."
        ),
    )
    parser.add_argument(
        "name", nargs="?", default=DEFAULT_APP, help=f"the app (default: {DEFAULT_APP})"
    )
    parser.add_argument("--list", action="store_true", help="list the apps and exit")
    parser.add_argument("--port", type=int, default=8866, help="port (default 8866)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    where.add_argument(
        "--public",
        action="store_const",
        const="0.0.0.0",
        dest="ip",
        help="listen on every interface (0.0.0.0): same token and limits",
    )
    parser.add_argument(
        "--base-url",
        type=_base_url,
        default="/",
        help="path prefix the app is served under, for a reverse proxy (default /)",
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument(
        "--db",
        default=None,
        help="round log to write to: a file (SQLite), or a postgresql:// URL shared by several "
        "servers (default: $LABKIT_DB, else a file in the user data folder)",
    )
    parser.add_argument(
        "--pipeline",
        type=Path,
        default=None,
        help="a diffusers pipeline folder (the pipeline app needs one)",
    )
    parser.add_argument(
        "--pool-size", type=int, default=1, help="kernels kept preheated (default 1)"
    )
    parser.add_argument(
        "--max-kernels",
        type=int,
        default=DEFAULT_MAX_KERNELS,
        help=f"visitors holding a kernel at once; the next is told to retry "
        f"(default {DEFAULT_MAX_KERNELS})",
    )
    parser.add_argument(
        "--cull-after",
        type=int,
        default=DEFAULT_CULL_AFTER_S,
        metavar="SECONDS",
        help=f"shut down kernels of pages closed or silent this long "
        f"(default {DEFAULT_CULL_AFTER_S})",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="compute threads per kernel (default 1)"
    )
    crowd = parser.add_argument_group(
        "crowd", "several raters rank one shared session (docs/crowd.md); apps: quickstart, digits"
    )
    crowd.add_argument(
        "--crowd",
        nargs="?",
        const="new",
        default=None,
        metavar="SESSION",
        help="serve one crowd session instead of a kernel per visitor; --crowd SESSION joins the "
        "crowd of that id in --db (a second server on the same log)",
    )
    crowd.add_argument(
        "--raters",
        type=int,
        default=5,
        metavar="R",
        help="a crowd round closes when R rankings are in (default 5)",
    )
    crowd.add_argument(
        "--round-seconds",
        type=float,
        default=60.0,
        metavar="T",
        help="... or T seconds after its first ranking (default 60; 0: no time limit)",
    )
    return parser


def main_app(argv: Sequence[str] | None = None, *, prog: str = "labkit app") -> int:
    parser = _build_parser(prog)
    args = parser.parse_args(argv)
    if args.list:
        width = max(len(n) for n in APPS)
        for app in APPS.values():
            mark = " (default)" if app.name == DEFAULT_APP else ""
            print(f"{app.name:<{width}}  {app.summary}{mark}")
        return 0
    if args.name not in APPS:
        parser.error(f"no app {args.name!r}; the apps are: {', '.join(APPS)}")
    app = APPS[args.name]
    for option, value, low in (
        ("--port", args.port, 1),
        ("--pool-size", args.pool_size, 0),
        ("--max-kernels", args.max_kernels, 1),
        ("--cull-after", args.cull_after, 1),
        ("--threads", args.threads, 1),
    ):
        if value < low:
            parser.error(f"{option} must be >= {low}; got {value}")
    if args.port > 65535:
        parser.error(f"--port must be in 1..65535; got {args.port}")
    env = dict(os.environ)
    if app.needs_pipeline:
        if args.pipeline is None:
            parser.error(
                f"app {app.name!r} needs --pipeline PATH: a diffusers pipeline folder "
                "(one with model_index.json)"
            )
        pipeline = args.pipeline.expanduser().resolve()
        if not (pipeline / "model_index.json").is_file():
            parser.error(
                f"--pipeline must be a diffusers pipeline folder; {pipeline} has no "
                "model_index.json"
            )
        env["LABKIT_PIPELINE"] = str(pipeline)
    elif args.pipeline is not None:
        parser.error(f"--pipeline is for the pipeline app; app {app.name!r} takes none")
    if not _free(args.port, args.ip):
        parser.error(f"port {args.port} on {args.ip} is in use; pick another with --port")
    try:
        db, db_shown = _log_target(args.db)
    except ValueError as err:
        parser.error(f"--db / $LABKIT_DB: {err}")
    if args.crowd is not None:
        return _main_crowd(args, parser, db=db, db_shown=db_shown)
    threads = str(args.threads)
    token = secrets.token_hex(24)
    env.update(
        LABKIT_DB=db,
        LABKIT_THREADS=threads,
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        **{TOKEN_ENV: token},
    )
    env.pop("JUPYTER_TOKEN", None)
    cmd = voila_command(
        app,
        **option_keywords(args, "port", "ip", "base_url", "pool_size", "max_kernels", "cull_after"),
    )
    url = app_url(ip=args.ip, port=args.port, base_url=args.base_url, token=token)
    print(
        f"labkit app {app.name}: starting on {args.ip}:{args.port} (round log: {db_shown}) ...",
        flush=True,
    )
    proc = subprocess.Popen(cmd, env=env)

    def _stop(signum: int, frame: FrameType | None) -> None:
        proc.terminate()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        if _wait_ready(proc, url, READY_TIMEOUT_S):
            print(url, flush=True)
            if args.ip in _ANY:
                print(
                    f"labkit app {app.name}: listening on every interface; from another "
                    "machine, replace 127.0.0.1 with this machine's address",
                    flush=True,
                )
            print(f"labkit app {app.name}: open the link above; Ctrl+C stops", flush=True)
            if not args.no_browser:
                webbrowser.open(url)
        elif proc.poll() is None:
            print(
                f"labkit app {app.name}: the server did not answer within "
                f"{READY_TIMEOUT_S:.0f}s; stopping it",
                file=sys.stderr,
                flush=True,
            )
            proc.terminate()
        return proc.wait()
    except KeyboardInterrupt:  # the server got the same Ctrl+C and shuts its kernels down
        with contextlib.suppress(KeyboardInterrupt):
            proc.wait(timeout=30)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.kill()


def _main_crowd(
    args: argparse.Namespace, parser: argparse.ArgumentParser, *, db: str, db_shown: str
) -> int:
    """``labkit app NAME --crowd``: one process serves the crowd (labkit._crowd_server)."""
    from labkit._crowd_server import CROWD_APPS, main_crowd

    if args.name not in CROWD_APPS:
        parser.error(f"--crowd: no crowd for app {args.name!r}; crowds: {', '.join(CROWD_APPS)}")
    if args.raters < 1 or args.round_seconds < 0:
        parser.error("--raters must be >= 1 and --round-seconds >= 0")
    return main_crowd(
        args.name,
        db=db,
        db_shown=db_shown,
        **option_keywords(args, "ip", "port", "base_url", "raters", "threads"),
        round_seconds=args.round_seconds or None,
        join=None if args.crowd == "new" else args.crowd,
        open_browser=not args.no_browser,
    )


def _writable_notebooks() -> Path:
    src = notebooks_dir()
    if os.access(src, os.W_OK) and src.parent.name != "labkit":
        return src  # a checkout: work on the real files
    from platformdirs import user_data_path

    dst = user_data_path("labkit") / "notebooks"
    dst.mkdir(parents=True, exist_ok=True)
    for nb in src.glob("*.ipynb"):
        if not (dst / nb.name).exists():
            shutil.copy2(nb, dst / nb.name)
    return dst


def main_lab(argv: Sequence[str] | None = None, *, prog: str = "labkit lab") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Open JupyterLab on the notebooks.")
    parser.add_argument("--port", type=int, default=None, help="port (default: JupyterLab's)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args = parser.parse_args(argv)
    folder = _writable_notebooks()
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}"]
    cmd.append("--ServerApp.ip=127.0.0.1")
    if args.port is not None:
        cmd.append(f"--ServerApp.port={args.port}")
    if args.no_browser:
        cmd.append("--no-browser")
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    print(f"labkit lab: JupyterLab on {folder}", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
