"""The wheel carries everything a user needs, and works in a fresh virtual environment."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from labkit.app import APPS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("labkit-*.whl")
    return path


def test_wheel_contains_the_bundle_the_weights_and_every_notebook(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "labkit/widgets/static/ranker.js",
        "labkit/widgets/static/ranker.css",
        "labkit/models/digits_ddpm/unet/diffusion_pytorch_model.safetensors",
        "labkit/models/digits_ddpm/unet/config.json",
        "labkit/models/digits_ddpm/scheduler/scheduler_config.json",
        "labkit/models/digits_ddpm/README.md",
    ):
        assert needed in names
    notebooks = {
        f"labkit/notebooks/{p.relative_to(ROOT / 'notebooks').as_posix()}"
        for p in (ROOT / "notebooks").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    }
    assert notebooks and notebooks <= names, notebooks - names
    for app in APPS.values():  # `labkit app NAME` finds its notebook in the wheel
        assert f"labkit/notebooks/{app.notebook}" in names, app.notebook
    assert not any("node_modules" in n or n.endswith(".TXT") for n in names)


def _see_installed_dependencies(py: Path) -> None:
    """Let the venv of ``py`` import the dependencies installed where this test runs.

    They are gigabytes (torch): the venv reads them from this interpreter's site-packages, named
    one per line in a ``.pth`` file of its own site-packages. That works whether this test runs in
    a bare system Python or in a virtual environment (where ``--system-site-packages`` would
    mean the *base* interpreter's packages, not this environment's). A ``.pth`` line is only
    appended to ``sys.path``, after the venv's own site-packages, and the ``.pth`` files in those
    folders are not run: the editable labkit of a checkout stays out, the wheel's labkit wins.
    """
    outer = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        outer.append(site.getusersitepackages())
    inner = subprocess.run(
        [str(py), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    (Path(inner) / "_outer_site_packages.pth").write_text("\n".join(outer) + "\n")


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_generates_a_round(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    _see_installed_dependencies(py)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    help_out = subprocess.run(
        [str(env_dir / "bin" / "labkit"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert help_out.returncode == 0 and "app" in help_out.stdout
    script = f"""
import pathlib, torch, labkit
assert pathlib.Path(labkit.__file__).is_relative_to({str(env_dir)!r}), labkit.__file__
from labkit.widgets import RankingWidget
from labkit.tasks.diffusion import DigitsTask
from labkit.app import APPS, notebooks_dir
assert all((notebooks_dir() / a.notebook).is_file() for a in APPS.values())
task = DigitsTask(3)
opt = labkit.ZORankSGD(task.x0(0), lr=0.5, mu=0.3, m=8, seed=0)
pngs = task.render(opt.ask())
assert len(pngs) == 8 and all(p[:8] == b"\\x89PNG\\r\\n\\x1a\\n" for p in pngs)
w = RankingWidget()
w.show_round(pngs, round_id=0)
print("ok", len(pngs))
"""
    out = subprocess.run(
        [str(py), "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "ok 8" in out.stdout
