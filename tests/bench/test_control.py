"""Tests of labkit.bench.control on a tiny budget: runs, equal budgets, table, plot, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("gymnasium")

from labkit.bench.control import (
    METHODS,
    RunTrace,
    main,
    markdown_table,
    plot,
    run_one,
)


def test_every_method_spends_at_most_the_budget_and_is_reproducible() -> None:
    for method in METHODS.values():
        trace = run_one("CartPole", method, 0, budget=32, horizon=30)
        assert trace.episodes[0] == 0
        assert 0 < trace.episodes[-1] <= 32
        m = method.m if method.m is not None else 4 + int(3 * math.log(10))  # CMA-ES, d = 10
        assert trace.episodes[-1] > 32 - m  # stops only when the next round would not fit
        again = run_one("CartPole", method, 0, budget=32, horizon=30)
        assert again.returns == trace.returns


def test_table_and_plot(tmp_path: Path) -> None:
    traces = [
        RunTrace("CartPole", "A", 0, [0, 8, 16], [10.0, 20.0, 30.0]),
        RunTrace("CartPole", "A", 1, [0, 8, 16], [10.0, 40.0, 50.0]),
        RunTrace("CartPole", "B", 0, [0, 16], [10.0, 12.0]),
    ]
    table = markdown_table(traces, {"CartPole": 16})
    assert "| zero policy (start) | 10.0 |" in table
    assert "| A | 40.0 [30.0, 50.0] |" in table
    assert "| B | 12.0 [12.0, 12.0] |" in table
    png = plot(traces, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_unknown_environments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--envs", "Pong"])
    assert "invalid choice" in capsys.readouterr().err
