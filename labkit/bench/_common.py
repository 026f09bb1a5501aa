"""Pieces every benchmark's command line shares."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from labkit.app import printed_link

#: Debian's chromium, and the only flags it needs beyond Playwright's own: Playwright already
#: passes --headless, --no-sandbox, --no-first-run and turns off background networking,
#: component updates and sync. Here there is no GPU, and QUIC has no way out of a closed network.
#: The latency benchmark and the browser tests share them.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--disable-gpu", "--disable-quic")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser``'s reading of ``argv`` (``None``: the command line) after one leading ``--``,
    which ``labkit bench NAME -- ARGS`` passes through."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    return parser.parse_args(args)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1, also written like ``1e6``."""
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1 or value != float(text):
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """``n`` threads in torch and, through threadpoolctl when present, in NumPy's BLAS; restored
    on exit (``main`` may run inside a test session or a notebook)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # a transitive dependency (scikit-learn); without it BLAS keeps its own
            yield
        else:
            with threadpool_limits(n):
                yield
    finally:
        torch.set_num_threads(before)


def descendants(pid: int) -> list[int]:
    """Ids of every living process below ``pid`` (children, grandchildren, ...).

    Jupyter kernels run in process groups of their own, so stopping a server's group is not
    enough: whoever started it also kills these, each by its id.
    """
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write a benchmark's result as indented JSON (creating the folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


# ---- memory of a process tree ------------------------------------------------------------------


@dataclass
class TreeMemory:
    """Samples of a process tree's memory, taken by a thread until :meth:`stop`."""

    root: int
    period_s: float = 0.5
    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    peak_kernels: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> tuple[int, int, int]:
        """(RSS sum, PSS sum, kernels) of ``root`` and everything below it, now, in KiB.

        PSS (proportional set size) splits each shared page among the processes that map it,
        so its sum over a tree is what the tree really holds; the RSS sum counts shared pages
        (torch's libraries in every kernel) once per process.
        """
        try:
            root = psutil.Process(self.root)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0, 0, 0
        rss = pss = kernels = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):  # gone meanwhile, or not ours to read
                memory = proc.memory_full_info()
                rss += memory.rss // 1024
                pss += getattr(memory, "pss", 0) // 1024  # Linux only
                kernels += any("ipykernel" in part for part in proc.cmdline())
        return rss, pss, kernels

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss, kernels = self.sample()
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_pss_kib = max(self.peak_pss_kib, pss)
            self.peak_kernels = max(self.peak_kernels, kernels)
            self.samples += 1
            self._stop.wait(self.period_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---- the server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def labkit_server(
    args: Sequence[str], *, log: Path, start_timeout_s: float = 300.0
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``labkit app ARGS`` on a free port; yields the process and the tokened link it printed.

    Stopped whatever happens: SIGTERM (labkit app stops Voilà, which stops its kernels; a crowd
    server stops itself), then every process that was below it.
    """
    port = _free_port()
    cmd = [sys.executable, "-m", "labkit", "app", *args, f"--port={port}", "--no-browser"]
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    below: list[int] = []
    try:
        deadline = time.monotonic() + start_timeout_s
        link = None
        while link is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"labkit app did not print its link; see {log}")
            time.sleep(0.1)
            link = printed_link(log.read_text(errors="replace"))
        yield proc, link
    finally:
        below = descendants(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def labkit_app(
    app: str,
    *,
    db: Path,
    log: Path,
    max_kernels: int,
    cull_after: int,
    pool_size: int,
    start_timeout_s: float = 300.0,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``labkit app APP`` (Voilà) on a free port, as :func:`labkit_server`."""
    args = [app, f"--db={db}", f"--max-kernels={max_kernels}", f"--cull-after={cull_after}"]
    args += [f"--pool-size={pool_size}"]
    with labkit_server(args, log=log, start_timeout_s=start_timeout_s) as started:
        yield started
