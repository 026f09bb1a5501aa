"""Tests of labkit.tasks.control: policies, seeded batched rollouts, views, and learning."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

gym = pytest.importorskip("gymnasium")

from labkit.executors import split  # noqa: E402
from labkit.judges import TopKJudge  # noqa: E402
from labkit.optim.base import optimize  # noqa: E402
from labkit.optim.zo_ranksgd import ZORankSGD  # noqa: E402
from labkit.tasks._control_views import _n_frames  # noqa: E402
from labkit.tasks.base import Task  # noqa: E402
from labkit.tasks.control import ControlTask  # noqa: E402


def _random(task: ControlTask, m: int, seed: int, scale: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return task.x0() + scale * torch.randn(m, task.n_params, generator=g)


def _frames(data: bytes) -> list[Image.Image]:
    img = Image.open(io.BytesIO(data))
    return [f.copy() for f in ImageSequence.Iterator(img)]


class _ChunkingExecutor:
    """Splits a round into three chunks and runs them in reverse order (results in order)."""

    workers = 3

    def __init__(self) -> None:
        self.calls = 0

    def map(self, fn: Any, items: Any) -> list[Any]:
        self.calls += 1
        out = [fn(item) for item in reversed(list(items))]
        return list(reversed(out))


# -- shapes and parameters ------------------------------------------------------------------------
def test_linear_policy_sizes_and_protocol() -> None:
    task = ControlTask("CartPole-v1", horizon=50)
    assert (task.obs_dim, task.act_dim, task.discrete) == (4, 2, True)
    assert task.n_params == 2 * 4 + 2
    assert task.layer_shapes == [((2, 4), 2)]
    x0 = task.x0()
    assert x0.shape == (10,) and x0.dtype == torch.float32 and not x0.any()
    assert isinstance(task, Task)
    assert task.maximize is True and task.mime == "image/gif"


def test_mlp_policy_sizes_and_start() -> None:
    task = ControlTask("Pendulum-v1", policy="mlp", hidden=(8, 5), horizon=20)
    assert (task.obs_dim, task.act_dim, task.discrete) == (3, 1, False)
    assert task.layer_shapes == [((8, 3), 8), ((5, 8), 5), ((1, 5), 1)]
    assert task.n_params == 8 * 3 + 8 + 5 * 8 + 5 + 5 + 1
    x0 = task.x0(seed=1)
    assert x0.shape == (task.n_params,)
    # hidden weights random (distinct features), biases and the output layer zero
    assert x0[: 8 * 3].abs().min() > 0
    assert not x0[8 * 3 : 8 * 3 + 8].any()
    assert not x0[-(5 + 1) :].any()
    assert torch.equal(x0, task.x0(seed=1)) and not torch.equal(x0, task.x0(seed=2))


def test_linear_policy_matches_a_hand_written_rollout() -> None:
    """θ = [W (out × in, row-major), b]; a = clip(W o + b, low, high); return = Σ rewards."""
    task = ControlTask("Pendulum-v1", horizon=40, seed=3)
    theta = _random(task, 1, seed=5)[0]
    W = theta[:3].double().numpy().reshape(1, 3)
    b = theta[3:].double().numpy()
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=3)
    total = 0.0
    for _ in range(40):
        a = np.clip(W @ np.asarray(obs, dtype=np.float64) + b, -2.0, 2.0)
        obs, r, terminated, truncated, _ = env.step(a)
        total += float(r)
        if terminated or truncated:
            break
    got = float(task.score(theta[None])[0])
    assert got == pytest.approx(total, rel=1e-5, abs=1e-6)


def test_discrete_policy_takes_the_argmax() -> None:
    # W = 0 and a bias on one action's output: the policy always takes that action; its episode
    # length must be that of gym's own env pushed the same way from the same start.
    task = ControlTask("CartPole-v1", horizon=200, seed=0)
    for action in (0, 1):
        x = torch.zeros(1, task.n_params)
        x[0, 8 + action] = 1.0
        env = gym.make("CartPole-v1")
        env.reset(seed=0)
        steps = 0
        while True:
            _, _, terminated, truncated, _ = env.step(action)
            steps += 1
            if terminated or truncated or steps == 200:
                break
        assert float(task.score(x)[0]) == steps


# -- determinism and batching --------------------------------------------------------------------
def test_rollouts_are_deterministic_and_seeded() -> None:
    X = _random(ControlTask("Pendulum-v1", horizon=60), 6, seed=0)
    a = ControlTask("Pendulum-v1", horizon=60, seed=7).score(X)
    b = ControlTask("Pendulum-v1", horizon=60, seed=7).score(X)
    c = ControlTask("Pendulum-v1", horizon=60, seed=8).score(X)
    assert a.shape == (6,) and a.dtype == torch.float64
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # another start state, other returns


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_batched_equals_one_by_one_and_chunked(env_id: str) -> None:
    task = ControlTask(env_id, horizon=80, episodes=2)
    X = _random(task, 7, seed=1)
    together = task.score(X)
    alone = torch.cat([task.score(X[i : i + 1]) for i in range(7)])
    assert torch.equal(together, alone)
    ex = _ChunkingExecutor()
    chunked = ControlTask(env_id, horizon=80, episodes=2, executor=ex).score(X)
    assert ex.calls == 1
    assert torch.equal(together, chunked)


def test_episodes_average_the_returns_of_consecutive_seeds() -> None:
    X = _random(ControlTask("Pendulum-v1", horizon=30), 3, seed=2)
    two = ControlTask("Pendulum-v1", horizon=30, seed=4, episodes=2).score(X)
    s4 = ControlTask("Pendulum-v1", horizon=30, seed=4).score(X)
    s5 = ControlTask("Pendulum-v1", horizon=30, seed=5).score(X)
    torch.testing.assert_close(two, (s4 + s5) / 2, rtol=1e-12, atol=1e-9)


# -- views ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env_id", "view", "fmt"),
    [
        ("CartPole-v1", "frames", "gif"),
        ("Pendulum-v1", "trajectory", "gif"),
        ("Pendulum-v1", "frames", "webp"),
    ],
)
def test_views_are_animations_with_many_frames(env_id: str, view: str, fmt: str) -> None:
    task = ControlTask(env_id, horizon=40, view=view, fmt=fmt, width=96, max_frames=10)
    X = _random(task, 3, seed=0, scale=0.05)
    views = task.render(X)
    assert len(views) == 3
    assert task.mime == f"image/{fmt}"
    for data in views:
        img = Image.open(io.BytesIO(data))
        assert img.format == fmt.upper()
        assert img.width == 96
        frames = _frames(data)
        assert len(frames) > 1
        assert getattr(img, "n_frames", 1) > 1
    # the views are of the scored rollouts: rendering does not change the returns
    assert torch.equal(task.score(X), task.score(X))


def test_terminated_rollout_is_padded_to_full_length() -> None:
    # The zero policy always pushes left: CartPole falls after a few steps. Its animation still
    # lasts the whole horizon (frames merged by the GIF encoder keep their summed duration).
    task = ControlTask("CartPole-v1", horizon=100, max_frames=20, width=64)
    data = task.render(task.x0()[None])[0]
    frames = _frames(data)
    total_ms = sum(int(f.info.get("duration", 0)) for f in frames)
    stride = math.ceil(100 / 20)
    assert total_ms == pytest.approx(_n_frames(task._spec) * round(1000 * 0.02 * stride), rel=0.01)
    assert len(frames) >= 2


def test_stick_view_needs_mujoco() -> None:
    with pytest.raises(ValueError, match="not a MuJoCo task"):
        ControlTask("CartPole-v1", view="stick")


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"policy": "rnn"}, "policy must be one of"),
        ({"hidden": 8}, "linear policy has no hidden"),
        ({"policy": "mlp", "hidden": (8, 0)}, "hidden must be positive ints"),
        ({"horizon": 0}, "horizon must be an int >= 1"),
        ({"episodes": 0}, "episodes must be an int >= 1"),
        ({"view": "video"}, "view must be one of"),
        ({"fmt": "png"}, "fmt must be one of"),
        ({"executor": "dask"}, "unknown executor 'dask'"),
        ({"env_kwargs": {"render_mode": "human"}}, "render_mode is chosen by the view"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ControlTask("CartPole-v1", **kwargs)


def test_bad_candidates_are_refused() -> None:
    task = ControlTask("CartPole-v1", horizon=10)
    with pytest.raises(ValueError, match="takes candidates of 10 parameters"):
        task.score(torch.zeros(2, 9))
    bad = torch.zeros(2, 10)
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        task.score(bad)
    with pytest.raises(ValueError, match=r"floating tensor; got dtype torch\.bool"):
        task.score(torch.zeros(2, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"floating tensor; got dtype torch\.complex64"):
        task.score(torch.zeros(2, 10, dtype=torch.complex64))
    with pytest.raises(ValueError, match="at least one candidate"):
        task.score(torch.zeros(0, 10))


def test_non_flat_spaces_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a flat Box observation"):
        ControlTask("Blackjack-v1", horizon=5)


# -- learning ------------------------------------------------------------------------------------
def test_zo_ranksgd_learns_cartpole_from_top_k_rankings() -> None:
    task = ControlTask("CartPole-v1", horizon=200, seed=0)
    opt = ZORankSGD(task.x0(), lr=0.5, mu=0.1, m=8, seed=0)
    judge = TopKJudge(task.score, k=3, maximize=True)
    start = float(task.score(task.x0()[None])[0])
    result = optimize(opt, judge, 20, objective=task.score)
    assert start < 20
    # the zero policy falls within ~10 steps; 20 rounds of top-3-of-8 rankings balance the pole
    # for most of the horizon (200 with this seed; 150 leaves room for platform arithmetic)
    assert result.values[-1] >= 150
    assert max(result.values) >= 190


def test_session_runs_a_control_task(tmp_path: Path) -> None:
    from labkit.session import Session

    task = ControlTask("CartPole-v1", horizon=50, width=48, max_frames=5)
    opt = ZORankSGD(task.x0(), lr=0.5, mu=0.1, m=4, seed=0)
    session = Session(
        opt,
        task=task,
        judge=TopKJudge(task.score, k=2, maximize=True),
        log=tmp_path / "rounds.sqlite",
    )
    rounds = session.run(3, progress=False)
    assert [r.round for r in rounds] == [0, 1, 2]
    assert all(len(r.ranking) == 2 for r in rounds)


# -- MuJoCo ---------------------------------------------------------------------------------------
def _mujoco_available() -> bool:
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True


mujoco_only = pytest.mark.skipif(not _mujoco_available(), reason="mujoco is not installed")


@mujoco_only
@pytest.mark.parametrize("env_id", ["Swimmer-v5", "Hopper-v5"])
def test_mujoco_rollouts_and_stick_views(env_id: str) -> None:
    task = ControlTask(env_id, horizon=60, max_frames=12, width=96)
    assert task.view == "stick"
    X = _random(task, 4, seed=0, scale=0.3)
    together = task.score(X)
    alone = torch.cat([task.score(X[i : i + 1]) for i in range(4)])
    assert torch.equal(together, alone)
    assert torch.equal(together, ControlTask(env_id, horizon=60).score(X))
    views = task.render(X)
    for data in views:
        img = Image.open(io.BytesIO(data))
        assert img.format == "GIF" and img.width == 96
        assert len(_frames(data)) > 1


def _last_frame(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.seek(img.n_frames - 1)
    return np.asarray(img.convert("RGB"), dtype=np.int16)


@mujoco_only
def test_a_round_of_halfcheetah_candidates_looks_different() -> None:
    """The control app's round: 8 candidates x0 + μ·ξ, horizon 150, tiles 192 px wide.

    Measured (mean absolute difference of two last frames, RGB 0-255, the closest pair of the
    round, ξ from seeds 0, 1, 2): μ = 0.02, candidates a person cannot tell apart: 0.5, 0.2,
    0.5; μ = 0.1 with the path, read-out and progress strip: 9.9, 13.6, 9.2 (6.5, 12.5, 6.7
    with the body alone). The bar, 5, is ten times the look-alike level and about half the
    closest pair measured, so drawing differences between Pillow versions do not flip it.
    """
    task = ControlTask("HalfCheetah-v5", horizon=150, seed=0)
    x0 = task.x0()
    xi = torch.randn(8, task.n_params, generator=torch.Generator().manual_seed(0))
    frames = [_last_frame(v) for v in task.render(x0 + 0.1 * xi)]
    assert frames[0].shape == (144, 192, 3)
    closest = min(
        float(np.abs(frames[i] - frames[j]).mean()) for i in range(8) for j in range(i + 1, 8)
    )
    assert closest > 5.0
    same = task.render(x0.expand(8, -1).clone())  # μ = 0: one policy eight times
    assert all(v == same[0] for v in same)


@mujoco_only
def test_stick_view_shows_the_path_not_only_the_last_pose() -> None:
    # Two rollouts that end in the same pose but got there differently (the second one's root
    # went 3 m further along x) must end in different frames: the trail, the read-out and the
    # progress strip come from the whole path.
    from labkit.tasks import _control_views, control

    task = ControlTask("HalfCheetah-v5", horizon=40, seed=0)
    spec = task._spec
    _, (rec,) = control._rollouts(spec, task.x0()[None].double().numpy(), record=True)
    assert rec.path is not None and rec.path.shape == (41, 3)
    moved = rec.path.copy()
    moved[:, 0] += np.linspace(0.0, 3.0, len(moved))
    env = control._envs(spec, 1, None)[0]
    a = _last_frame(_control_views._draw_stick(spec, env, rec))
    b = _last_frame(_control_views._draw_stick(spec, env, dataclasses.replace(rec, path=moved)))
    strip = slice(-16, None)  # under the ground: the progress strip (measured 5.5 here)
    assert np.abs(a[strip] - b[strip]).mean() > 1.0
    assert (a[:12, :60] != b[:12, :60]).any()  # the read-out, top left
    assert np.array_equal(a, _last_frame(_control_views._draw_stick(spec, env, rec)))


def test_split_is_used_for_chunks() -> None:
    assert split(7, 3) == [(0, 3), (3, 5), (5, 7)]


_SUBPROCESS_FRAMES = """
import io, os
os.environ.pop("MUJOCO_GL", None)
import labkit.tasks.control as control
print("MUJOCO_GL", os.environ["MUJOCO_GL"])
from PIL import Image
task = control.ControlTask("Hopper-v5", horizon=8, max_frames=4, width=64, view="frames")
img = Image.open(io.BytesIO(task.render(task.x0()[None])[0]))
print("frames", img.format, img.size, img.n_frames)
"""


@mujoco_only
@pytest.mark.slow
def test_mujoco_gl_is_set_and_the_real_renderer_works_offscreen() -> None:
    # In a child process: a GL failure in MuJoCo can abort the process instead of raising.
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_FRAMES],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "MUJOCO_GL egl" in out.stdout or "MUJOCO_GL osmesa" in out.stdout, out.stderr[-2000:]
    gl_trouble = out.returncode < 0 or any(
        word in out.stderr for word in ("EGL", "OpenGL", "GLError", "OSMesa", "osmesa")
    )
    if out.returncode != 0 and gl_trouble:  # pragma: no cover - no software GL on this machine
        pytest.skip(f"offscreen MuJoCo rendering unavailable here: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "frames GIF (64, 48)" in out.stdout
    assert int(out.stdout.split()[-1]) > 1
