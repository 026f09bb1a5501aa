"""`labkit bench diffusion`: a tiny run end to end."""

from __future__ import annotations

import pytest

from labkit.bench import diffusion


def test_tiny_run_completes_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--quick", "--seeds", "1", "--rounds", "2", "--problems", "digit", "--no-progress"]
    assert diffusion.main(argv) == 0
    out = capsys.readouterr().out
    assert "ZO-RankSGD" in out
