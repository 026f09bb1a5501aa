"""Pieces every benchmark's command line shares."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

#: Debian's chromium and the flags it runs with here (headless, no sandbox as root, no background
#: traffic on a closed network); the latency benchmark and the browser tests share them.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


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
    """Ids of every living process below ``pid`` (children, grandchildren, ...), from /proc.

    Jupyter kernels run in process groups of their own, so stopping a server's group is not
    enough: whoever started it also kills these, each by its id.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may contain spaces; ppid follows it.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write a benchmark's result as indented JSON (creating the folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
