"""The benchmarks' shared skeleton: method registry, traces written as CSV, the shared flags."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from labkit.bench._common import bench_parser, pick
from labkit.bench._harness import Trace, group_by, step_values, write_traces
from labkit.bench._methods import Method, build, registry
from labkit.optim.cmaes import CMAES
from labkit.optim.zo_ranksgd import ZORankSGD


@dataclass
class _Run(Trace):
    CSV_FIELDS = ("name", "round", "value")

    name: str
    values: list[float] = field(default_factory=list)

    def csv_rows(self) -> Iterator[dict[str, Any]]:
        for r, v in enumerate(self.values):
            yield {"name": self.name, "round": r, "value": f"{v:.2f}"}


def test_traces_are_written_row_by_row_under_their_header(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    write_traces(_Run, [_Run("a", [1.0, 0.5], seconds=2.0), _Run("b", [3.0])], path)
    assert path.read_text().splitlines() == [
        "name,round,value",
        "a,0,1.00",
        "a,1,0.50",
        "b,0,3.00",
    ]
    write_traces(_Run, [], path)  # no runs: the header alone
    with path.open(newline="") as fh:
        assert next(csv.reader(fh)) == ["name", "round", "value"]


def test_group_by_keeps_first_seen_order_and_step_values_reads_the_last_step() -> None:
    runs = [_Run("b"), _Run("a"), _Run("b", [1.0])]
    groups = group_by(runs, lambda r: r.name)
    assert list(groups) == ["b", "a"] and groups["b"] == [runs[0], runs[2]]
    assert step_values([0, 8, 14], [5.0, 4.0, 1.0], [0, 7, 8, 13, 20]) == [5, 5, 4, 4, 1]


def test_registry_keys_methods_by_label_and_refuses_two_of_one_label() -> None:
    a, b = Method("A", "zorank"), Method("B", "cmaes", m=None)
    assert registry(a, b) == {"A": a, "B": b}
    with pytest.raises(ValueError, match="two methods are labelled 'A'"):
        registry(a, Method("A", "prior"))


def test_build_gives_the_method_its_round_shape() -> None:
    x0 = torch.zeros(6)
    zo = build(Method("ZO", "zorank", m=4, k=2, line_search=3), x0, seed=0, lr=0.1, mu=0.01)
    assert isinstance(zo, ZORankSGD) and zo.m == 4 and zo.k == 2 and zo.line_search == 3
    cma = build(Method("CMA", "cmaes", m=None), x0, seed=0, sigma=0.5)
    assert isinstance(cma, CMAES)
    with pytest.raises(ValueError, match="unknown method kind 'x'"):
        build(Method("X", "x"), x0, seed=0)


def test_shared_flags_are_defined_once_and_read_by_the_runners_names() -> None:
    p = bench_parser("prog", "what it does", quick="small", seeds="runs", loop=True, out=True)
    args = p.parse_args(["--quick", "--seeds", "3", "--no-progress", "--out", "x"])
    assert (args.quick, args.seeds, args.threads, args.progress) == (True, 3, 1, False)
    assert args.out == Path("x")
    assert pick(args, "seeds", "progress") == {"seeds": 3, "progress": False}
    assert bench_parser("prog", "what it does", loop=True).parse_args([]).progress is True
    with pytest.raises(SystemExit):
        bench_parser("prog", "what it does", json_out=True).parse_args(["--out", "x"])
