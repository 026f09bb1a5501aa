"""`labkit app` and `labkit lab`: the notebooks as people meet them.

``labkit app [NAME]`` serves one notebook app with Voilà on 127.0.0.1, the app itself at
``http://127.0.0.1:PORT/``. Kernels are preheated (the notebook has already run when a visitor
arrives), and every visitor gets a kernel of their own, hence a session of their own: their rows
in the shared round log carry their own session id. ``--db`` names the log (the kernels read it
from ``LABKIT_DB``).

``labkit lab`` opens JupyterLab on the notebooks. In a source checkout that is ``notebooks/``; in
an installed wheel the notebooks ship inside the package and are first copied to a writable
folder under the user's data directory (never overwriting a copy the user has edited).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["APPS", "App", "main_app", "main_lab", "notebooks_dir"]


@dataclass(frozen=True)
class App:
    name: str
    notebook: str
    summary: str


#: The apps, by name; the first is the default (it needs no internet and no GPU).
APPS: dict[str, App] = {
    a.name: a
    for a in (
        App("digits", "diffusion.ipynb", "steer the embedded digits diffusion model by ranking"),
        App("quickstart", "quickstart.ipynb", "rank points of a 2-D function, watch the path"),
        App("control", "control.ipynb", "rank rollouts of a control policy"),
    )
}
DEFAULT_APP = "digits"


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


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _default_db() -> Path:
    from labkit.session import default_log_path

    return default_log_path()


def voila_command(app: App, *, port: int, open_browser: bool, pool_size: int) -> list[str]:
    """The Voilà command line that serves ``app`` on 127.0.0.1:``port``."""
    notebook = notebooks_dir() / app.notebook
    if not notebook.is_file():
        raise FileNotFoundError(f"the notebook of app {app.name!r} is missing: {notebook}")
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--port={port}",
        # Exactly this port or an error: never another one than the URL labkit printed.
        "--Voila.port_retries=0",
        "--Voila.ip=127.0.0.1",
        "--theme=light",
        # Preheated kernels: the notebook has run before a visitor arrives, one kernel each.
        "--preheat_kernel=True",
        f"--pool_size={pool_size}",
    ]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


def main_app(argv: Sequence[str] | None = None, *, prog: str = "labkit app") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a labkit notebook app with Voilà on 127.0.0.1.",
    )
    parser.add_argument(
        "name", nargs="?", default=DEFAULT_APP, help=f"the app (default: {DEFAULT_APP})"
    )
    parser.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default 8866)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument("--db", type=Path, default=None, help="round log (SQLite) to write to")
    parser.add_argument("--list", action="store_true", help="list the apps and exit")
    parser.add_argument(
        "--pool-size", type=int, default=1, help="kernels kept preheated (default 1)"
    )
    args = parser.parse_args(argv)
    if args.list:
        width = max(len(n) for n in APPS)
        for app in APPS.values():
            mark = " (default)" if app.name == DEFAULT_APP else ""
            print(f"{app.name:<{width}}  {app.summary}{mark}")
        return 0
    if args.name not in APPS:
        parser.error(f"no app {args.name!r}; the apps are: {', '.join(APPS)}")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in 1..65535; got {args.port}")
    if args.pool_size < 0:
        parser.error(f"--pool-size must be >= 0; got {args.pool_size}")
    if not _free(args.port):
        parser.error(f"port {args.port} on 127.0.0.1 is in use; pick another with --port")
    db = (args.db or _default_db()).expanduser().resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LABKIT_DB": str(db)}
    cmd = voila_command(
        APPS[args.name],
        port=args.port,
        open_browser=not args.no_browser,
        pool_size=args.pool_size,
    )
    print(f"labkit app {args.name}: http://127.0.0.1:{args.port}/  (round log: {db})", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


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
