"""``python -m labkit.bench.crowd``: a small real run (5 raters, 2 rounds) on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from labkit.bench import crowd


def test_a_small_crowd_renders_once_a_round_and_loses_no_ranking(tmp_path: Path) -> None:
    out = tmp_path / "crowd.json"
    done = subprocess.run(
        [sys.executable, "-m", "labkit.bench.crowd", "--raters=5", "--rounds=2", f"--out={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads(out.read_text())
    assert r["problems"] == []
    # One render per round shown (2 closed + the one open at the end), never one per rater.
    assert r["renders"] == r["rounds_shown"] == 3
    assert r["rankings_lost"] == 0
    assert len(r["close_latency_s"]) == 2 and r["rss_per_rater_mib"] < 50
    assert "| model renders / rounds shown | 3 / 3 |" in done.stdout


def test_rss_reads_this_process() -> None:
    assert 1 < crowd.rss_mib(os.getpid()) < 100_000
