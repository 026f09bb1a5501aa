"""``labkit bench latency`` end to end: `labkit app` in chromium, a few rounds, sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.bench._common import CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_bench_times_a_real_app_with_a_second_visitor(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api", reason="needs playwright (python)")
    out = tmp_path / "latency.json"
    argv = ["--app", "quickstart", "--rounds", "3", "--warmup", "1", "--pause", "0.1"]
    argv += ["--settle", "1", "--json", str(out)]
    # In a process of its own: a test session may already run Playwright's event loop.
    run = subprocess.run(
        [sys.executable, "-m", "labkit.bench.latency", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # 0: every target met; 1: some missed (a loaded CI machine may) — both are measurements.
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert "click → every next-round image painted" in run.stdout
    result = json.loads(out.read_text())
    per = result["per_round"]
    assert len(per["painted"]) == len(per["dom"]) == len(per["committed"]) == 3
    for painted, dom, committed in zip(per["painted"], per["dom"], per["committed"], strict=True):
        # The ranking is committed before the next round can reach the page, which comes before
        # it is painted; the page's clock and the log's share the machine's wall clock.
        assert 0 < committed < dom <= painted < 60
    assert result["painted"]["median"] == sorted(per["painted"])[1]
    assert 0 < result["link_printed"] < result["first_candidates"]
    assert result["arrival"] is not None and result["arrival"] > 0
    assert result["server_memory_mib"]["kernels"] >= 2  # the two visitors' kernels at least
    assert set(result["met"]) == {"first_candidates", "arrival", "painted_median", "painted_p90"}
