"""Pieces the benchmarks share: command-line flags and parsing, threads, the machine, memory.

Starting and stopping a server lives in :mod:`labkit.bench._server`; the method registry of the
optimizer benchmarks in :mod:`labkit.bench._methods`, their traces and loop in
:mod:`labkit.bench._harness`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

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


def shared_flags(
    *,
    quick: str | None = None,
    seeds: str | None = None,
    loop: bool = False,
    out: bool = False,
    json_out: bool = False,
) -> argparse.ArgumentParser:
    """A parent parser (``argparse.ArgumentParser(parents=[...])``) with the flags benchmarks
    share, each defined once; a benchmark names the ones it takes.

    * ``--quick`` (given what it means here): a small configuration (``args.quick``);
    * ``--seeds N`` (given what a seed runs here): ``args.seeds``, ``None`` when not given (the
      default depends on ``--quick``);
    * ``loop``: ``--threads N`` (``args.threads``, default 1) and ``--no-progress``, read as
      ``args.progress`` (``True`` unless given), the name of the runners' keyword argument;
    * ``--out DIR``: where the runs and figures go (``args.out``, a Path or ``None``);
    * ``--json OUT`` (``json_out``): all figures as one JSON file (``args.json``).
    """
    p = argparse.ArgumentParser(add_help=False)
    if quick is not None:
        p.add_argument("--quick", action="store_true", help=quick)
    if seeds is not None:
        p.add_argument("--seeds", type=positive_int, default=None, help=seeds)
    if loop:
        p.add_argument(
            "--threads",
            type=positive_int,
            default=1,
            help="threads for torch and, where the benchmark limits them, NumPy's BLAS (default "
            "1: on a busy machine a parallel region waits for its slowest thread)",
        )
        p.add_argument(
            "--no-progress", dest="progress", action="store_false", help="no progress bar"
        )
    if out:
        help_out = "write the runs (runs.csv) and the figures here"
        p.add_argument("--out", type=Path, default=None, metavar="DIR", help=help_out)
    if json_out:
        help_json = "write all figures to this JSON file"
        p.add_argument("--json", type=Path, metavar="OUT", help=help_json)
    return p


def bench_parser(prog: str, description: str, **flags: Any) -> argparse.ArgumentParser:
    """A benchmark's parser: its ``prog`` and ``description``, and the shared flags named in
    ``flags`` (:func:`shared_flags`); the benchmark adds its own flags to it."""
    return argparse.ArgumentParser(
        prog=prog, description=description, parents=[shared_flags(**flags)]
    )


def pick(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """``names`` of the parsed ``args``, as keyword arguments for a benchmark's runner."""
    return {name: getattr(args, name) for name in names}


def machine() -> dict[str, Any]:
    """The machine a figure was measured on: processor, CPUs, Python and the load average."""
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


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
