"""Parameters of a gymnasium policy → rollouts: returns for a machine, animations for a person.

A candidate is one flat parameter vector θ of a deterministic policy. ``score`` runs one episode
(or ``episodes``) per candidate and returns the episode returns (higher is better); ``render``
runs the same episodes again and turns each into a short animation that the ranking widget plays
side by side.

**Policies.** ``policy="linear"``: a = W o + b. ``policy="mlp"``: a = W₂ tanh(W₁ o + b₁) + b₂
(more hidden layers with ``hidden=(h₁, h₂, ...)``). θ is the concatenation, layer by layer, of
each W (row-major, ``out × in``) and then its b. The output ``y`` becomes an action:

* continuous actions (a ``Box``): ``clip(y, low, high)`` — the action space's own bounds, the
  usual convention of linear policies in random-search RL (ARS, ES);
* discrete actions: ``argmax(y)``, one output per action (ties to the lower action).

The policy is deterministic, so all the randomness of a rollout is in the environment's reset,
which is seeded: episode ``e`` of every candidate starts from ``env.reset(seed=seed + e)``. Every
candidate of a round thus meets the same start states (common random numbers), and a candidate's
return does not depend on which other candidates share its round, how they are batched, or which
executor runs them.

**Batched stepping.** The candidates of a round (or of one executor chunk) step in lockstep: one
environment per candidate, all observations stacked into an ``m × o`` array, all actions computed
by one batched matrix product, then each live environment steps. An environment that terminates
stops adding reward (and its animation freezes, dimmed).

**Views** (``view=``):

* ``"frames"`` — the environment's own ``rgb_array`` renderer (pygame for classic control, the
  offscreen MuJoCo renderer for MuJoCo tasks; slow in software GL, ~5–20 frames/s here).
* ``"stick"`` — MuJoCo tasks only, and their default: the geometry drawn from the simulator's
  state (``data.geom_xpos``/``geom_xmat``: capsules as thick lines, spheres as discs), projected on
  the plane the bodies move in (x–z for Hopper/HalfCheetah, x–y for Swimmer/Reacher), the camera
  following the root body along the ground, with ground ticks every metre so progress shows.
  Every frame also shows where the body went over the whole rollout so far, so that two
  candidates that moved differently look different even where one frame alone would not: the
  path of the root body (the torso) at every step, drawn in the world frame with a flag where it
  started; its displacement along the ground since the start ("+2.31 m") in the corner; and,
  under the ground of an x–z view, a progress strip centred on the start whose bar is the span
  of ground covered so far, on a signed logarithmic scale that is the same for every candidate
  (ticks at ±1, ±10, ... m). A figure fixed to the world (Reacher's arm) has none of these.
* ``"trajectory"`` — any environment: the observation components and the running return as
  curves, with a cursor sweeping through time.

Views are animated GIFs (``fmt="gif"``, mime ``image/gif``) or WebPs (``fmt="webp"``) of at
most ``max_frames`` frames, played at the simulation's real time.

**MuJoCo's GL.** MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when its rendering modules
are imported, and without it the offscreen renderer can abort the whole process on a headless
machine. This module therefore sets ``MUJOCO_GL`` (``os.environ.setdefault``: a value you set
wins) before gymnasium or mujoco is imported: ``egl`` when libEGL is found, else ``osmesa``.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import io
import itertools
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def _choose_mujoco_gl() -> None:
    """Set ``MUJOCO_GL`` for headless offscreen rendering unless the user chose one."""
    if "MUJOCO_GL" in os.environ:
        return
    if ctypes.util.find_library("EGL") is not None:
        os.environ["MUJOCO_GL"] = "egl"
    else:
        os.environ["MUJOCO_GL"] = "osmesa"


_choose_mujoco_gl()

from labkit.executors import Executor, as_executor, split  # noqa: E402

__all__ = ["VIEWS", "ControlTask"]

#: The kinds of view ``render`` can make (see the module docstring).
VIEWS = ("auto", "frames", "stick", "trajectory")
_FORMATS = {"gif": "image/gif", "webp": "image/webp"}
_POLICIES = ("linear", "mlp")
# GIF frame delays below 20 ms are played at 100 ms by browsers; never ask for less.
_MIN_FRAME_MS = 20


# -- the picklable description of a rollout ------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    """Everything a worker needs to run rollouts (picklable, hashable: it keys the env pool)."""

    env_id: str
    env_kwargs: tuple[tuple[str, Any], ...]
    layers: tuple[int, ...]  # sizes o, h₁, ..., out
    discrete: bool
    low: tuple[float, ...]
    high: tuple[float, ...]
    horizon: int
    seed: int
    episodes: int
    view: str  # resolved: "frames" | "stick" | "trajectory"
    width: int
    max_frames: int
    fmt: str
    mujoco: bool

    @property
    def n_params(self) -> int:
        return sum(a * b + b for a, b in itertools.pairwise(self.layers))


# One process-wide pool of environments per (spec's env, render mode): made once, reset per
# episode. A worker process of an executor keeps its own.
_POOL: dict[tuple[str, tuple[tuple[str, Any], ...], str | None], list[Any]] = {}


def _make_env(env_id: str, env_kwargs: dict[str, Any], render_mode: str | None) -> Any:
    import gymnasium as gym

    kwargs = dict(env_kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    # No TimeLimit of gymnasium's: the horizon is ours. No env checker: it only slows stepping.
    with _quiet_mujoco_compiler():
        return gym.make(env_id, disable_env_checker=True, max_episode_steps=None, **kwargs)


@contextlib.contextmanager
def _quiet_mujoco_compiler() -> Iterator[None]:
    """While a model is compiled, drop MuJoCo's deprecation notice about gymnasium's own
    HalfCheetah asset ("settotalmass"), which it prints to the process's stderr (and so into
    every notebook cell) each time an environment is made; other warnings go to stderr as usual.
    The previous warning handler is restored afterwards."""
    try:
        import mujoco
    except ImportError:
        yield
        return
    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if "settotalmass" in message:
            return
        if previous is not None:
            previous(message)
        else:
            print(f"WARNING: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _envs(spec: _Spec, n: int, render_mode: str | None) -> list[Any]:
    kwargs = dict(spec.env_kwargs)
    if render_mode == "rgb_array" and spec.mujoco:
        # MuJoCo renders at the size asked (480 × 480 by default): ask for the view's size,
        # since software GL pays per pixel.
        kwargs.setdefault("width", spec.width)
        kwargs.setdefault("height", round(0.75 * spec.width))
    key = (spec.env_id, tuple(sorted(kwargs.items())), render_mode)
    pool = _POOL.setdefault(key, [])
    while len(pool) < n:
        pool.append(_make_env(spec.env_id, kwargs, render_mode))
    return pool[:n]


def _is_mujoco(env: Any) -> bool:
    u = env.unwrapped
    return hasattr(u, "model") and hasattr(u, "data") and hasattr(u.data, "geom_xpos")


# -- the policy ----------------------------------------------------------------------------------
def _unflatten(spec: _Spec, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views (W ``n × out × in``, b ``n × out``) per layer of the ``n × d`` parameters."""
    out, pos = [], 0
    n = theta.shape[0]
    for a, b in itertools.pairwise(spec.layers):
        W = theta[:, pos : pos + a * b].reshape(n, b, a)
        pos += a * b
        bias = theta[:, pos : pos + b]
        pos += b
        out.append((W, bias))
    return out


def _forward(params: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray) -> np.ndarray:
    """Outputs ``n × out`` of the ``n`` policies on their ``n × o`` observations (float64).

    ``np.matmul`` on stacked matrices runs the same kernel on each ``out × in`` slice, so a row's
    output does not depend on how many rows share the batch (batched == one by one, bit for bit).
    """
    h = obs
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        h = np.matmul(W, h[:, :, None])[:, :, 0] + b
        if i < last:
            h = np.tanh(h)
    return h


def _to_actions(spec: _Spec, y: np.ndarray) -> np.ndarray:
    if spec.discrete:
        return np.argmax(y, axis=1)
    return np.clip(y, np.asarray(spec.low), np.asarray(spec.high))


# -- rollouts ------------------------------------------------------------------------------------
@dataclass
class _Record:
    """What one rollout's view is drawn from (one entry per recorded step)."""

    frames: list[Any]  # RGB arrays, geometry snapshots or (obs, return) pairs
    done_at: int | None  # index of the first recorded step after termination
    dt: float  # simulated seconds between recorded steps
    # Stick view only: the root body's position after the reset and after every step, a
    # (steps + 1) × 3 array. Frame k < last shows step k·stride; the last frame the last step.
    path: np.ndarray | None = None


def _frame_stride(spec: _Spec) -> int:
    return max(1, math.ceil(spec.horizon / spec.max_frames))


def _env_dt(env: Any) -> float:
    u = env.unwrapped
    dt = getattr(u, "dt", None)
    if dt is None:
        dt = getattr(u, "tau", None)  # CartPole
    if dt is None:
        fps = env.metadata.get("render_fps") or 30
        dt = 1.0 / float(fps)
    return float(dt)


# The figure's root body: the first body under the world ("torso" in HalfCheetah, Hopper, Walker2d
# and Swimmer). The stick view draws its path at every step, and how far it got.
_ROOT_BODY = 1


def _root_position(env: Any) -> np.ndarray:
    return np.asarray(env.unwrapped.data.xpos[_ROOT_BODY], dtype=np.float64).copy()


def _snapshot(spec: _Spec, env: Any, obs: np.ndarray, ret: float) -> Any:
    if spec.view == "frames":
        return env.render()
    if spec.view == "stick":
        d = env.unwrapped.data
        return (d.geom_xpos.copy(), d.geom_xmat.copy())
    return (np.asarray(obs, dtype=np.float64).copy(), ret)


def _rollouts(spec: _Spec, theta: np.ndarray, *, record: bool) -> tuple[np.ndarray, list[_Record]]:
    """Returns ``(n,)`` (mean over ``spec.episodes``) of the ``n × d`` policies θ, and, when
    ``record``, the first episode of each as a :class:`_Record`."""
    n = theta.shape[0]
    render_mode = "rgb_array" if record and spec.view == "frames" else None
    envs = _envs(spec, n, render_mode)
    params = _unflatten(spec, theta)
    total = np.zeros(n, dtype=np.float64)
    stride = _frame_stride(spec)
    records: list[_Record] = []
    for episode in range(spec.episodes):
        rec = record and episode == 0
        track = rec and spec.view == "stick"
        obs = np.stack(
            [np.asarray(env.reset(seed=spec.seed + episode)[0], dtype=np.float64) for env in envs]
        )
        ret = np.zeros(n, dtype=np.float64)
        alive = np.ones(n, dtype=bool)
        frames: list[list[Any]] = [[] for _ in range(n)]
        done_at: list[int | None] = [None] * n
        paths: list[list[np.ndarray]] = [[_root_position(env)] if track else [] for env in envs]
        for t in range(spec.horizon):
            if rec and t % stride == 0:
                for i, env in enumerate(envs):
                    if alive[i]:
                        frames[i].append(_snapshot(spec, env, obs[i], float(ret[i])))
            actions = _to_actions(spec, _forward(params, obs))
            for i, env in enumerate(envs):
                if not alive[i]:
                    continue
                a = int(actions[i]) if spec.discrete else actions[i]
                o, r, terminated, truncated, _ = env.step(a)
                ret[i] += float(r)
                obs[i] = o
                if track:
                    paths[i].append(_root_position(env))
                if terminated or truncated:
                    alive[i] = False
                    if rec:
                        frames[i].append(_snapshot(spec, env, obs[i], float(ret[i])))
                        done_at[i] = len(frames[i])
            if not alive.any():
                break
        total += ret
        if rec:
            dt = _env_dt(envs[0]) * stride
            for i in range(n):
                if alive[i]:  # the state at the end of the horizon
                    frames[i].append(_snapshot(spec, envs[i], obs[i], float(ret[i])))
                path = np.stack(paths[i]) if track else None
                records.append(_Record(frames=frames[i], done_at=done_at[i], dt=dt, path=path))
    return total / spec.episodes, records


def _evaluate_chunk(job: tuple[_Spec, np.ndarray, bool]) -> tuple[np.ndarray, list[bytes]]:
    """Executor work item: returns of a chunk of candidates and, if asked, their encoded views."""
    spec, theta, views = job
    returns, records = _rollouts(spec, theta, record=views)
    encoded: list[bytes] = []
    if views:
        envs = _envs(spec, 1, "rgb_array" if spec.view == "frames" else None)
        draw = _VIEW_DRAWERS[spec.view]
        encoded = [draw(spec, envs[0], rec) for rec in records]
    return returns, encoded


# -- drawing -------------------------------------------------------------------------------------
# A small fixed palette: drawing straight into palette images needs no quantization per frame.
_PALETTE = [
    (255, 255, 255),  # 0 background
    (40, 40, 40),  # 1 ink
    (170, 170, 170),  # 2 grid / ground ticks
    (31, 119, 180),  # 3..8 curves and bodies
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (225, 225, 225),  # 9 dimmed background (after termination)
    (120, 120, 120),  # 10 dimmed ink
    (110, 180, 230),  # 11 trail of the root body
]


def _palette_bytes() -> list[int]:
    flat = [c for rgb in _PALETTE for c in rgb]
    return flat + [0] * (768 - len(flat))


def _encode(spec: _Spec, frames: Sequence[Any], dt: float) -> bytes:
    """Animated GIF/WebP bytes of PIL images, ``dt`` simulated seconds apart (real time)."""
    duration = max(_MIN_FRAME_MS, round(1000 * dt))
    buf = io.BytesIO()
    first, rest = frames[0], list(frames[1:])
    if spec.fmt == "gif":
        first.save(buf, format="GIF", save_all=True, append_images=rest, duration=duration, loop=0)
    else:
        first.convert("RGB").save(
            buf,
            format="WEBP",
            save_all=True,
            append_images=[f.convert("RGB") for f in rest],
            duration=duration,
            loop=0,
            quality=70,
            method=0,
        )
    return buf.getvalue()


def _hold_last(images: list[Any], done_at: int | None, spec: _Spec, palette: Any) -> list[Any]:
    """Pad a terminated rollout to the full length with its last frame, dimmed: every view of a
    round then lasts as long, and a fallen hopper stays visibly fallen. ``palette`` (a "P"
    image) is the GIF palette the dimmed frame is mapped to."""
    from PIL import Image

    n_total = _n_frames(spec)
    if done_at is None or len(images) >= n_total:
        return images
    last = images[-1].convert("RGB")
    dim = Image.blend(last, Image.new("RGB", last.size, (255, 255, 255)), 0.55)
    if spec.fmt == "gif":
        dim = dim.quantize(palette=palette, dither=Image.Dither.NONE)
    return images + [dim] * (n_total - len(images))


def _n_frames(spec: _Spec) -> int:
    """Frames of a full-length animation: steps 0, s, 2s, ... < horizon, and the final state."""
    return math.ceil(spec.horizon / _frame_stride(spec)) + 1


_FONT: Any = None


def _font() -> Any:
    """Pillow's small bitmap font, loaded once (loading it per frame costs more than drawing)."""
    global _FONT
    if _FONT is None:
        from PIL import ImageFont

        _FONT = ImageFont.load_default_imagefont()
    return _FONT


def _palette_image() -> Any:
    from PIL import Image

    img = Image.new("P", (1, 1))
    img.putpalette(_palette_bytes())
    return img


def _draw_frames(spec: _Spec, env: Any, rec: _Record) -> bytes:
    """The environment's own RGB frames, scaled to ``spec.width`` and quantized once."""
    from PIL import Image

    images = []
    palette: Any = None
    for arr in rec.frames:
        img = Image.fromarray(np.asarray(arr, dtype=np.uint8))
        # A box reduction by an integer factor first (cheap, and it averages away aliasing),
        # then the small bilinear resize to the exact width.
        factor = img.width // spec.width
        if factor > 1:
            img = img.reduce(factor)
        h = max(1, round(img.height * spec.width / img.width))
        img = img.resize((spec.width, h), Image.Resampling.BILINEAR)
        if spec.fmt == "gif":
            # One adaptive palette from the first frame, reused (no per-frame colour flicker).
            if palette is None:
                palette = img.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
            img = img.quantize(palette=palette, dither=Image.Dither.NONE)
        images.append(img)
    images = _hold_last(images, rec.done_at, spec, palette)
    return _encode(spec, images, rec.dt)


def _capsule_axes(env: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per geom: type, radius, half length, body id (MuJoCo model arrays)."""
    model = env.unwrapped.model
    return (
        np.asarray(model.geom_type),
        np.asarray(model.geom_size[:, 0]),
        np.asarray(model.geom_size[:, 1]),
        np.asarray(model.geom_bodyid),
    )


# mjtGeom codes: plane 0, hfield 1, sphere 2, capsule 3, ellipsoid 4, cylinder 5, box 6.
_PLANE, _SPHERE, _CAPSULE, _ELLIPSOID, _CYLINDER, _BOX = 0, 2, 3, 4, 5, 6
# mjtJoint codes: free 0, ball 1, slide 2, hinge 3.
_FREE, _SLIDE = 0, 2
# Pixels under the ground of an x–z stick view, for the progress strip.
_STRIP = 16


def _root_travels(env: Any) -> bool:
    """Whether the root body can move through the world (a free or slide joint), rather than
    only turn about a fixed point."""
    model = env.unwrapped.model
    if model.nbody <= _ROOT_BODY:
        return False
    first, count = int(model.body_jntadr[_ROOT_BODY]), int(model.body_jntnum[_ROOT_BODY])
    kinds = np.asarray(model.jnt_type)[first : first + count] if count > 0 else np.array([])
    return bool(np.isin(kinds, (_FREE, _SLIDE)).any())


def _draw_stick(spec: _Spec, env: Any, rec: _Record) -> bytes:
    """MuJoCo geometry as a planar stick figure (see the module docstring), camera on the root."""
    from PIL import Image, ImageDraw

    gtype, radius, half, body = _capsule_axes(env)
    pos = np.stack([f[0] for f in rec.frames])  # T × G × 3
    mat = np.stack([f[1] for f in rec.frames]).reshape(len(rec.frames), -1, 3, 3)
    moving = body > 0
    drawn = gtype != _PLANE
    # 1. The plane of motion: drop the world axis along which the moving geoms spread least.
    spread = np.ptp(pos[:, moving, :].reshape(-1, 3), axis=0) if moving.any() else np.ones(3)
    drop = int(np.argmin(spread))
    ax_h, ax_v = [a for a in range(3) if a != drop]
    gravity_up = ax_v == 2  # x–z or y–z: z is up and the ground (z = 0) stays put
    # 2. Segment end points in the plane: capsules/cylinders along their local z axis (±half),
    # boxes and ellipsoids along their longest local axis, spheres as points.
    axis_z = mat[:, :, :, 2]  # T × G × 3, the geom's local z in world coordinates
    seg = half.copy()
    seg[(gtype == _SPHERE)] = 0.0
    box_like = (gtype == _BOX) | (gtype == _ELLIPSOID)
    if box_like.any():
        size = np.asarray(env.unwrapped.model.geom_size)
        longest = np.argmax(size, axis=1)
        for g in np.nonzero(box_like)[0]:
            axis_z[:, g, :] = mat[:, g, :, longest[g]]
            seg[g] = size[g, longest[g]]
    thick = radius.copy()
    thick[box_like] = np.sort(np.asarray(env.unwrapped.model.geom_size)[box_like], axis=1)[:, 1]
    p0 = pos - axis_z * seg[None, :, None]
    p1 = pos + axis_z * seg[None, :, None]
    # 3. The camera. Its centre is the mean of the moving geoms ("centre"), held still when the
    # figure stays within a body length of where it started (Reacher, a slow Swimmer), else
    # following it (a running HalfCheetah; then ground ticks slide by). Along z (up) it never
    # moves: the ground stays at the bottom. The scale fits the farthest moving geom end from
    # the centre over the whole rollout, so the figure keeps its size through the animation.
    ends = np.concatenate([p0, p1], axis=1)[:, np.concatenate([moving, moving]), :]
    if ends.shape[1] == 0:
        ends = pos
    mid = ends.mean(axis=1)  # T × 3
    # (the thickness of moving geoms only: the floor plane's "radius" is its size, 40 m)
    fat = float(thick[moving & drawn].max(initial=0.0))
    axes = [ax_h] if gravity_up else [ax_h, ax_v]

    def reach(centre: np.ndarray) -> float:
        rel = ends[:, :, axes] - centre[:, None, axes]
        return float(np.abs(rel).max(initial=0.1)) + fat

    still = np.broadcast_to(mid.mean(axis=0), mid.shape)
    follow = reach(still) > 1.5 * reach(mid)
    centre = mid if follow else still
    r = reach(centre)
    W = spec.width
    H = round(W * 0.75)
    if gravity_up:
        # The ground sits _STRIP pixels above the bottom: the progress strip goes under it.
        top = float(ends[..., 2].max(initial=0.5))
        scale = min(W / (2.2 * r), (H - _STRIP) / (1.15 * top))
        v_lo = -_STRIP / scale
    else:
        scale = min(W, H) / (2.2 * r)
        v_lo = 0.0
    # 4. Where the body went, when its root can go anywhere (not Reacher's arm, fixed to the
    # world): the root body's path at every step (the trail, in the world frame, so it stays
    # where the body was while the camera moves on) and its displacement along the ground since
    # the start, Δ (the read-out, and the bar of the progress strip).
    assert rec.path is not None  # _rollouts records the path of every stick view
    travels = _root_travels(env)
    path = rec.path  # S × 3, S = steps + 1
    n_frames = pos.shape[0]
    shown = np.minimum(np.arange(n_frames) * _frame_stride(spec), len(path) - 1)
    shown[-1] = len(path) - 1  # the last frame is the last state
    delta = path[:, ax_h] - path[0, ax_h]  # S
    lo_seen = np.minimum.accumulate(delta)
    hi_seen = np.maximum.accumulate(delta)
    strip = _progress_strip(spec, rec, W) if gravity_up and travels else None
    palette = _palette_bytes()
    images = []
    for t in range(n_frames):
        s = int(shown[t])
        dimmed = rec.done_at is not None and t >= rec.done_at
        ink, trail = (10, 10) if dimmed else (1, 11)
        img = Image.new("P", (W, H), 9 if dimmed else 0)
        img.putpalette(palette)
        draw = ImageDraw.Draw(img)
        ch = float(centre[t, ax_h])
        cv = float(centre[t, ax_v])

        def px(h: float, v: float, ch: float = ch, cv: float = cv) -> tuple[float, float]:
            x = W / 2 + (h - ch) * scale
            y = H - (v - v_lo) * scale if gravity_up else H / 2 - (v - cv) * scale
            return x, y

        # Ground (z = 0) and ticks every metre: they slide by as the body moves forward.
        if gravity_up:
            gy = px(0.0, 0.0)[1]
            draw.line([(0, gy), (W, gy)], fill=2, width=1)
        span = W / (2 * scale)
        for k in range(math.floor(ch - span) - 1, math.ceil(ch + span) + 2):
            x = px(float(k), 0.0)[0]
            if gravity_up:
                draw.line([(x, gy), (x, gy + 5)], fill=2, width=1)
            else:
                draw.line([(x, 0), (x, H)], fill=2, width=1)
        # The start (a flag on the ground, or a cross in the plane) and the trail up to now.
        sx, sy = px(float(path[0, ax_h]), 0.0 if gravity_up else float(path[0, ax_v]))
        if travels and gravity_up:
            draw.line([(sx, sy), (sx, sy - 12)], fill=ink, width=1)
            draw.polygon([(sx, sy - 12), (sx + 6, sy - 10), (sx, sy - 8)], fill=ink)
        elif travels:
            draw.line([(sx - 3, sy - 3), (sx + 3, sy + 3)], fill=ink, width=1)
            draw.line([(sx - 3, sy + 3), (sx + 3, sy - 3)], fill=ink, width=1)
        if travels and s > 0:  # (px on the whole path at once: a loop doubles the drawing time)
            xs = W / 2 + (path[: s + 1, ax_h] - ch) * scale
            v = path[: s + 1, ax_v]
            ys = H - (v - v_lo) * scale if gravity_up else H / 2 - (v - cv) * scale
            draw.line(np.stack([xs, ys], axis=1).ravel().tolist(), fill=trail, width=1)
        for g in np.nonzero(drawn)[0]:
            colour = 10 if dimmed else (1 if body[g] == 0 else 3 + int(body[g]) % 6)
            w = max(1, round(2 * thick[g] * scale))
            a = px(float(p0[t, g, ax_h]), float(p0[t, g, ax_v]))
            b = px(float(p1[t, g, ax_h]), float(p1[t, g, ax_v]))
            if seg[g] > 0:
                draw.line([a, b], fill=colour, width=w)
            r = w / 2
            for c in (a, b) if seg[g] > 0 else (a,):
                draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=colour)
        if strip is not None:
            strip.draw(draw, float(lo_seen[s]), float(hi_seen[s]), float(delta[s]), ink, trail)
        if travels:
            draw.text((3, 2), f"{float(delta[s]):+.2f} m", fill=ink, font=_font())
        images.append(img)
    images = _hold_last(images, rec.done_at, spec, _palette_image())
    return _encode(spec, images, rec.dt)


@dataclass(frozen=True)
class _ProgressStrip:
    """The bar under the ground of an x–z stick view: how far the root body got along the ground.

    Its centre is the start; a distance Δ (metres, either way) sits at
    ``x = W/2 + sign(Δ) · (W/2 − pad) · log(1 + |Δ|/1 m) / log(1 + L)``, a signed logarithmic
    scale fixed for the task, so that the same distance is the same bar in every tile of every
    round, and 0.3 m, 3 m and 30 m are all told apart on 192 pixels. ``L`` is the distance at
    10 m/s (about the fastest these figures run) over the horizon, rounded up to a power of ten;
    ticks mark ±1, ±10, ... m. A distance beyond ``L`` stops at the end (the read-out has it).
    """

    width: int
    y: float  # the strip's baseline, pixels from the top
    reach_m: float  # L

    def x(self, delta: float) -> float:
        half = self.width / 2 - 4
        f = min(1.0, math.log1p(abs(delta)) / math.log1p(self.reach_m))
        return self.width / 2 + math.copysign(half * f, delta)

    def draw(self, draw: Any, lo: float, hi: float, now: float, ink: int, bar: int) -> None:
        """The ticks, the span ``[lo, hi]`` (m) visited so far, and a dot at ``now`` (m)."""
        y = self.y
        draw.line([(4, y), (self.width - 4, y)], fill=2, width=1)
        decade = 1.0
        while decade <= self.reach_m:
            for d in (-decade, decade):
                x = self.x(d)
                draw.line([(x, y - 2), (x, y + 2)], fill=2, width=1)
            decade *= 10
        draw.line([(self.x(lo), y), (self.x(hi), y)], fill=bar, width=3)
        c = self.width / 2
        draw.line([(c, y - 4), (c, y + 4)], fill=ink, width=1)
        x = self.x(now)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=ink)


def _progress_strip(spec: _Spec, rec: _Record, width: int) -> _ProgressStrip:
    seconds = spec.horizon * rec.dt / _frame_stride(spec)
    reach = 10.0 ** math.ceil(math.log10(max(10.0, 10.0 * seconds)))
    return _ProgressStrip(width=width, y=round(width * 0.75) - 6, reach_m=reach)


def _draw_trajectory(spec: _Spec, env: Any, rec: _Record) -> bytes:
    """Observation components (up to 5) and the running return against time, a cursor moving."""
    from PIL import Image, ImageDraw

    obs = np.stack([f[0] for f in rec.frames])  # T × o
    ret = np.array([f[1] for f in rec.frames])
    n_total = _n_frames(spec)
    W = spec.width
    H = round(W * 0.75)
    pad = 4
    half = (H - 3 * pad) // 2

    def curve(values: np.ndarray, top: int) -> list[tuple[float, float]]:
        lo, hi = float(values.min()), float(values.max())
        hi = hi if hi > lo else lo + 1.0
        xs = pad + np.arange(len(values)) * (W - 2 * pad) / max(1, n_total - 1)
        ys = top + half - (values - lo) / (hi - lo) * half
        return list(zip(xs.tolist(), ys.tolist(), strict=True))

    base = Image.new("P", (W, H), 0)
    base.putpalette(_palette_bytes())
    draw = ImageDraw.Draw(base)
    for j in range(min(5, obs.shape[1])):
        pts = curve(obs[:, j], pad)
        if len(pts) > 1:
            draw.line(pts, fill=3 + j, width=1)
    pts = curve(ret, 2 * pad + half)
    if len(pts) > 1:
        draw.line(pts, fill=1, width=2)
    draw.text((pad, 2 * pad + half), "return", fill=1, font=_font())
    images = []
    for t in range(n_total):
        img = base.copy()
        d = ImageDraw.Draw(img)
        x = pad + min(t, len(rec.frames) - 1) * (W - 2 * pad) / max(1, n_total - 1)
        dimmed = rec.done_at is not None and t >= rec.done_at
        d.line([(x, 0), (x, H)], fill=6 if not dimmed else 10, width=1)
        d.text((W - 70, 2), f"R = {ret[min(t, len(ret) - 1)]:.1f}", fill=1, font=_font())
        images.append(img)
    return _encode(spec, images, rec.dt)


_VIEW_DRAWERS = {"frames": _draw_frames, "stick": _draw_stick, "trajectory": _draw_trajectory}


# -- the task ------------------------------------------------------------------------------------
class ControlTask:
    """The parameters of a policy for a gymnasium environment, judged by their rollouts.

    Args:
        env_id: any gymnasium id with a ``Box`` (continuous) or ``Discrete`` action space and a
            flat ``Box`` observation space, e.g. ``"CartPole-v1"``, ``"Pendulum-v1"``,
            ``"HalfCheetah-v5"``.
        policy: ``"linear"`` (default) or ``"mlp"``.
        hidden: hidden layer sizes of the MLP (an int or a tuple; default ``(16,)``); not allowed
            with the linear policy.
        horizon: steps per episode (default: the environment's registered episode length).
        seed: episode ``e`` starts from ``env.reset(seed=seed + e)``.
        episodes: episodes per candidate; the score is their mean return.
        executor: where rollouts run: ``None``/``"inprocess"``, ``"ray"`` or an
            :class:`~labkit.executors.Executor`. The candidates are split into
            ``executor.workers`` chunks.
        view: ``"auto"`` (``"stick"`` for MuJoCo, ``"frames"`` for environments with an
            ``rgb_array`` renderer, else ``"trajectory"``), or one of them by name.
        width: width of a view in pixels (the height follows).
        max_frames: most frames of an animation (the steps are subsampled evenly).
        fmt: ``"gif"`` (default) or ``"webp"``.
        env_kwargs: keyword arguments of ``gymnasium.make``.

    Attributes:
        n_params: d, the length of a candidate vector.
        obs_dim, act_dim: o, and the action outputs (discrete: the number of actions).
        discrete: whether actions are discrete.
        maximize: ``True``: a higher return is better.
        mime: ``"image/gif"`` or ``"image/webp"``.

    Example:
        >>> task = ControlTask("CartPole-v1", horizon=200)
        >>> opt = ZORankSGD(task.x0(), lr=0.5, mu=0.1, m=8, seed=0)
        >>> task.score(opt.ask())     # (8,) returns, float64
    """

    maximize: bool = True

    def __init__(
        self,
        env_id: str,
        *,
        policy: str = "linear",
        hidden: int | Sequence[int] | None = None,
        horizon: int | None = None,
        seed: int = 0,
        episodes: int = 1,
        executor: Executor | str | None = None,
        view: str = "auto",
        width: int = 192,
        max_frames: int = 48,
        fmt: str = "gif",
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(env_id, str) or not env_id:
            raise ValueError(f"env_id must be a gymnasium environment id; got {env_id!r}")
        if policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}; got {policy!r}")
        if policy == "linear" and hidden is not None:
            raise ValueError(
                f"hidden={hidden!r} sizes an MLP; the linear policy has no hidden layer"
            )
        hidden_t: tuple[int, ...] = ()
        if policy == "mlp":
            hs = (16,) if hidden is None else ((hidden,) if isinstance(hidden, int) else hidden)
            hidden_t = tuple(hs)
            if not hidden_t or any(
                isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden_t
            ):
                raise ValueError(
                    f"hidden must be positive ints, e.g. 16 or (32, 32); got {hidden!r}"
                )
        for name, value, least in (
            ("seed", seed, 0),
            ("episodes", episodes, 1),
            ("width", width, 16),
            ("max_frames", max_frames, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}; got {view!r}")
        if fmt not in _FORMATS:
            raise ValueError(f"fmt must be one of {tuple(_FORMATS)}; got {fmt!r}")
        kwargs = dict(env_kwargs or {})
        if "render_mode" in kwargs:
            raise ValueError("render_mode is chosen by the view; leave it out of env_kwargs")

        # 1. Probe the environment once for its spaces, episode length and kind.
        import gymnasium as gym
        from gymnasium import spaces

        env = _make_env(env_id, kwargs, None)
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(
                f"{env_id} observes {obs_space}; a ControlTask needs a flat Box observation"
            )
        if isinstance(act_space, spaces.Discrete):
            discrete, out = True, int(act_space.n)
            low: tuple[float, ...] = ()
            high: tuple[float, ...] = ()
        elif isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
            discrete, out = False, int(act_space.shape[0])
            low = tuple(float(v) for v in act_space.low)
            high = tuple(float(v) for v in act_space.high)
        else:
            raise ValueError(
                f"{env_id} acts in {act_space}; a ControlTask needs a Discrete or flat Box action"
            )
        registered = gym.spec(env_id).max_episode_steps
        if horizon is None:
            if registered is None:
                raise ValueError(f"{env_id} registers no episode length; give horizon=")
            horizon = int(registered)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1; got {horizon!r}")
        mujoco = _is_mujoco(env)
        if view == "auto":
            if mujoco:
                view = "stick"
            elif "rgb_array" in (env.metadata.get("render_modes") or []):
                view = "frames"
            else:
                view = "trajectory"
        if view == "stick" and not mujoco:
            raise ValueError(f"view='stick' draws MuJoCo geometry; {env_id} is not a MuJoCo task")
        env.close()

        self.env_id = env_id
        self.policy = policy
        self.hidden = hidden_t
        self.obs_dim = int(obs_space.shape[0])
        self.act_dim = out
        self.discrete = discrete
        self.horizon = horizon
        self.seed = seed
        self.episodes = episodes
        self.view = view
        self.executor = as_executor(executor)
        self.mime = _FORMATS[fmt]
        self._spec = _Spec(
            env_id=env_id,
            env_kwargs=tuple(sorted(kwargs.items())),
            layers=(self.obs_dim, *hidden_t, out),
            discrete=discrete,
            low=low,
            high=high,
            horizon=horizon,
            seed=seed,
            episodes=episodes,
            view=view,
            width=width,
            max_frames=max_frames,
            fmt=fmt,
            mujoco=mujoco,
        )
        self.n_params = self._spec.n_params

    def __repr__(self) -> str:
        pol = "linear" if self.policy == "linear" else f"mlp{list(self.hidden)}"
        return (
            f"ControlTask({self.env_id!r}, policy={pol}, d={self.n_params}, "
            f"horizon={self.horizon}, seed={self.seed}, episodes={self.episodes}, "
            f"view={self.view!r})"
        )

    @property
    def layer_shapes(self) -> list[tuple[tuple[int, int], int]]:
        """``((out, in), out)`` of each layer's W and b, in the order they sit in θ."""
        sizes = self._spec.layers
        return [((b, a), b) for a, b in itertools.pairwise(sizes)]

    def x0(self, *, seed: int = 0) -> torch.Tensor:
        """A starting point, a ``(d,)`` float32 CPU tensor.

        Linear policy: zeros (the usual start of random search on linear policies: the zero
        policy is a neutral, deterministic baseline). MLP: hidden weights W ~ N(0, 1/fan_in)
        from ``seed`` (so the hidden units compute distinct features), biases and the output
        layer zero (so the start policy is still the zero policy). With zero hidden weights every
        hidden unit would stay tanh(0) = 0 and the output layer would see no signal.
        """
        x = torch.zeros(self.n_params, dtype=torch.float32)
        if self.policy == "mlp":
            g = torch.Generator(device="cpu").manual_seed(seed)
            pos = 0
            for (out, inp), nb in self.layer_shapes[:-1]:
                w = torch.randn(out * inp, generator=g, dtype=torch.float32) / math.sqrt(inp)
                x[pos : pos + out * inp] = w
                pos += out * inp + nb
        return x

    def _params(self, X: torch.Tensor) -> np.ndarray:
        if not isinstance(X, torch.Tensor) or X.dim() < 1:
            raise ValueError(f"candidates must be an m × d tensor; got {X!r}")
        if not X.dtype.is_floating_point:
            raise ValueError(f"candidates must be a floating tensor; got dtype {X.dtype}")
        if X.shape[0] < 1:
            raise ValueError("a round must have at least one candidate; got m=0")
        flat = X.detach().reshape(X.shape[0], -1)
        if flat.shape[1] != self.n_params:
            raise ValueError(
                f"{self!r} takes candidates of {self.n_params} parameters; got shape "
                f"{tuple(X.shape)}"
            )
        theta = flat.to("cpu", torch.float64).numpy()
        if not np.isfinite(theta).all():
            raise ValueError("candidate parameters must be finite; got NaN or inf")
        return theta

    def evaluate(self, X: torch.Tensor, *, views: bool = False) -> tuple[torch.Tensor, list[bytes]]:
        """Roll out the ``m × d`` candidates: ``(m,)`` float64 CPU returns and, when ``views``,
        one encoded animation per candidate (else an empty list)."""
        theta = self._params(X)
        jobs = [
            (self._spec, theta[a:b], views) for a, b in split(theta.shape[0], self.executor.workers)
        ]
        results = self.executor.map(_evaluate_chunk, jobs)
        returns = np.concatenate([r for r, _ in results])
        encoded = [v for _, vs in results for v in vs]
        return torch.from_numpy(returns), encoded

    def score(self, X: torch.Tensor) -> torch.Tensor:
        """Episode returns of the ``m × d`` candidates, an ``(m,)`` float64 CPU tensor (higher is
        better; the mean over ``episodes`` episodes)."""
        return self.evaluate(X)[0]

    def render(self, X: torch.Tensor) -> list[bytes]:
        """One animation (bytes of ``mime``) of the first episode of each of the ``m × d``
        candidates, in row order."""
        return self.evaluate(X, views=True)[1]
