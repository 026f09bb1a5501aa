"""The committed widget bundle is exactly what widgets/src builds to (CI rebuilds it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_committed_bundle_matches_a_fresh_build() -> None:
    if shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must check the widget bundle, but npm (Node >= 18) is not installed")
        pytest.skip("npm (Node >= 18) is not installed; the bundle check needs it")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_widgets.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
