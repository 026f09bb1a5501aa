"""``labkit bench load``: its log check, and a small real run in chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.bench import load
from labkit.bench._common import CHROMIUM
from labkit.roundlog import RoundLog


def _log(db: Path, sessions: list[list[list[int]]]) -> None:
    with RoundLog(db) as log:
        for i, rankings in enumerate(sessions):
            sid = log.new_session(meta={"name": f"s{i}"})
            for r, ranking in enumerate(rankings):
                log.append(sid, round=r, ranking=ranking, m=len(ranking))


def test_check_log_finds_lost_and_mixed_rankings(tmp_path: Path) -> None:
    visits = [load.Visit(0, rankings=[(0, 1), (1, 0)]), load.Visit(1, rankings=[(1, 0), (1, 0)])]
    good = tmp_path / "good.sqlite"
    _log(good, [[[1, 0], [1, 0]], [[0, 1], [1, 0]]])
    assert load.check_log(good, visits, rounds=2) == ([], 4)
    lost = tmp_path / "lost.sqlite"
    _log(lost, [[[0, 1], [1, 0]], [[1, 0]]])
    problems, logged = load.check_log(lost, visits, rounds=2)
    assert logged == 3 and any("not 0..1" in p for p in problems)
    mixed = tmp_path / "mixed.sqlite"
    _log(mixed, [[[0, 1], [1, 0]], [[0, 1], [1, 0]]])
    problems, _ = load.check_log(mixed, visits, rounds=2)
    assert any("no visitor's" in p for p in problems)


@pytest.mark.browser
@pytest.mark.slow
def test_a_small_crowd_ranks_apart_within_a_memory_bound_and_is_culled(tmp_path: Path) -> None:
    pytest.importorskip("playwright.async_api", reason="needs playwright (python)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    # --cull-after 30: shorter, and a loaded machine's page may still be loading when its kernel
    # counts as idle. In a process of its own: the benchmark runs its own asyncio loop, which
    # cannot start inside one a browser test of this session may already run (Playwright's).
    out = tmp_path / "load.json"
    argv = ["--visitors", "3", "--rounds", "2", "--max-kernels", "3", "--cull-after", "30"]
    run = subprocess.run(
        [sys.executable, "-m", "labkit.bench.load", *argv, "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), run.stdout + run.stderr
    r = json.loads(out.read_text())
    assert r["problems"] == [], (r["problems"], run.stdout[-3000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stdout + run.stderr
    assert r["logged"] == r["submitted"] == 6
    # Measured (docs/benchmarks.md): about 0.33 GiB RSS per quickstart kernel, 0.3 GiB labkit
    # app and Voilà; 3 visitors + 1 warm kernel hold about 1.6 GiB.
    assert r["peak_rss_mib"] < 3 * 1024, r
    assert r["culled_after_close_s"] is not None and r["culled_after_close_s"] < 30 + 30
