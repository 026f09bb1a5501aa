"""The skeleton the optimizer benchmarks share: run traces and the loop over a grid.

A benchmark (``functions``, ``control``, ``diffusion``, ``steer``) is then a loop over its grid
and a table of its summaries:

* its methods are a registry of :class:`labkit.bench._methods.Method`;
* :class:`Trace` is one run; a subclass names its CSV columns and yields its rows, and
  :func:`write_traces` writes them through :class:`csv.DictWriter`;
* :func:`progress_bar` goes around the loop; :func:`group_by` gathers the runs of a table's cell
  and :func:`step_values` puts their curves on one grid;
* the shared flags of the command lines are :func:`labkit.bench._common.shared_flags`.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

# -- traces ---------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Trace:
    """One run of a benchmark, ``seconds`` its wall time.

    A subclass (a dataclass) names the columns of its CSV in ``CSV_FIELDS`` and yields its rows,
    one per run or one per round, from :meth:`csv_rows`, each value as the file should show it.
    """

    CSV_FIELDS: ClassVar[tuple[str, ...]] = ()
    seconds: float = 0.0

    def csv_rows(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError


T = TypeVar("T", bound=Trace)


def write_traces(kind: type[T], traces: Iterable[T], path: Path) -> None:
    """The rows of every trace (of class ``kind``) as a CSV with ``kind.CSV_FIELDS`` as header."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=kind.CSV_FIELDS)
        writer.writeheader()
        for trace in traces:
            writer.writerows(trace.csv_rows())


# -- the loop -------------------------------------------------------------------------------------


def progress_bar(jobs: Sequence[Any], desc: str, *, enabled: bool, unit: str = "it") -> Any:
    """``jobs`` behind a tqdm progress bar on stderr (none when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(jobs, desc=desc, unit=unit, disable=not enabled, file=sys.stderr)


K = TypeVar("K")


def group_by(traces: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """``traces`` grouped by ``key``, groups and traces within them in first-seen order."""
    groups: dict[K, list[T]] = {}
    for trace in traces:
        groups.setdefault(key(trace), []).append(trace)
    return groups


def step_values(xs: Sequence[float], ys: Sequence[float], grid: Iterable[float]) -> list[float]:
    """``ys`` as a step function of ``xs`` (ascending, ``xs[0]`` at or below the grid), read at
    each point of ``grid`` (ascending): the ``y`` of the last ``x`` at or before it.

    How a curve of runs that report at different points (rounds of different sizes, evaluations
    every few rounds) is put on one grid for a median over seeds.
    """
    out, i = [], 0
    for q in grid:
        while i + 1 < len(xs) and xs[i + 1] <= q:
            i += 1
        out.append(ys[i])
    return out
