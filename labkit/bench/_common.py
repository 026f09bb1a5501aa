"""Pieces every benchmark's command line shares."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

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
