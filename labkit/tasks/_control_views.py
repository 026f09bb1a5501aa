"""The views of a :class:`labkit.tasks.control.ControlTask`: a recorded rollout → an animation.

:mod:`labkit.tasks.control` runs the rollouts and records, for each candidate to be shown, a
:class:`_Record` (RGB frames, geometry snapshots or observations, one per recorded step); this
module draws it and encodes the animation: ``"frames"`` (the environment's own renderer, scaled
and quantized), ``"stick"`` (MuJoCo geometry as a planar stick figure, with the root body's trail,
its displacement and a progress strip) and ``"trajectory"`` (observation curves and the running
return). What each view shows, and why, is told in :mod:`labkit.tasks.control`'s docstring.
Every drawer has the signature ``(spec, env, record) -> bytes`` (:data:`_VIEW_DRAWERS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit.media import animation_bytes

if TYPE_CHECKING:
    from labkit.tasks.control import _Spec

# GIF frame delays below 20 ms are played at 100 ms by browsers; never ask for less.
_MIN_FRAME_MS = 20


# -- what a view is drawn from -------------------------------------------------------------------
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


# The figure's root body: the first body under the world ("torso" in HalfCheetah, Hopper, Walker2d
# and Swimmer). The stick view draws its path at every step, and how far it got.
_ROOT_BODY = 1


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
    return animation_bytes(frames, fmt=spec.fmt, duration_ms=duration)


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
    """MuJoCo geometry as a planar stick figure, camera on the root.

    What it shows is told in :mod:`labkit.tasks.control`'s docstring ("Views").
    """
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
