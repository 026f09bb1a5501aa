"""Classic test functions, batched on torch tensors, and a task that shows them to a person.

Every function takes ``X``, an ``n × d`` floating tensor on any device, and returns an ``(n,)``
tensor of values on the same device and in the same dtype. Each has its global minimum 0 at a
known point, so a run's progress can be read off as "value of the iterate":

========== ===================================================== ===============
name       f(x)                                                  argmin
========== ===================================================== ===============
sphere     Σ x_i²                                                0
ellipsoid  Σ c^{i/(d-1)} x_i²   (c = condition number, 1e6)      0
rosenbrock Σ_{i<d} 100 (x_{i+1} − x_i²)² + (1 − x_i)²            (1, …, 1)
rastrigin  Σ x_i² + 10 (1 − cos 2π x_i)                          0
========== ===================================================== ===============

:class:`TestFunction` bundles a function with its optimum, a deterministic default start and a box
to plot it in; :data:`FUNCTIONS` / :func:`get_function` are the registry by name.
`FunctionTask` is the Task (see design.md) for them: ``score(X)`` is the values (lower is
better), ``render(X)`` draws each 2-D candidate on the function's contour plot as a PNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from labkit._checks import integer
from labkit.media import png_bytes

__all__ = [
    "FUNCTIONS",
    "FunctionTask",
    "TestFunction",
    "ellipsoid",
    "get_function",
    "rastrigin",
    "rosenbrock",
    "sphere",
]

#: A plotting box for 2-D views: ((x_min, x_max), (y_min, y_max)).
Box = tuple[tuple[float, float], tuple[float, float]]


# -- input checks ---------------------------------------------------------------------------------
def _check_points(X: Any, name: str, *, min_dim: int = 1) -> torch.Tensor:
    """Refuse anything that is not an ``n × d`` floating tensor with ``d >= min_dim``.

    Shape and dtype checks only: no host sync, so the functions stay cheap on an accelerator.
    """
    if not isinstance(X, torch.Tensor):
        raise ValueError(
            f"{name} takes an n × d torch tensor of points; got {type(X).__name__} "
            f"(wrap it with torch.as_tensor(..., dtype=torch.float32))"
        )
    if X.dim() != 2:
        raise ValueError(
            f"{name} takes an n × d tensor (one point per row); got shape {tuple(X.shape)} "
            f"(use X.unsqueeze(0) for a single point)"
        )
    if not X.dtype.is_floating_point:
        raise ValueError(f"{name} needs a floating-point tensor; got dtype {X.dtype}")
    if X.shape[1] < min_dim:
        raise ValueError(f"{name} needs dimension d >= {min_dim}; got d={X.shape[1]}")
    return X


def _check_dim(d: Any, name: str, min_dim: int) -> int:
    if integer(d) is None or d < min_dim:
        raise ValueError(f"{name} needs an integer dimension d >= {min_dim}; got d={d!r}")
    return int(d)


# -- the functions --------------------------------------------------------------------------------
def sphere(X: torch.Tensor) -> torch.Tensor:
    """f(x) = Σ x_i². ``X``: ``n × d``; returns ``(n,)`` on X's device/dtype. Minimum 0 at 0."""
    X = _check_points(X, "sphere")
    return (X * X).sum(dim=1)


def ellipsoid(X: torch.Tensor, *, cond: float = 1e6) -> torch.Tensor:
    """f(x) = Σ_i c^{i/(d-1)} x_i²: a sphere stretched to condition number ``c = cond``.

    Axis ``i`` (0-based) is weighted by ``cond ** (i / (d - 1))``, so the weights run
    geometrically from 1 to ``cond`` and the Hessian's condition number is exactly ``cond``
    (``d = 1`` has the single weight 1). ``X``: ``n × d``; returns ``(n,)`` on X's device/dtype.
    Minimum 0 at 0. In float16 the weights overflow beyond ``cond ≈ 6e4``; use float32 or wider.
    """
    X = _check_points(X, "ellipsoid")
    if isinstance(cond, bool) or not isinstance(cond, (int, float)) or not cond >= 1:
        raise ValueError(f"ellipsoid's condition number must be a number >= 1; got cond={cond!r}")
    if not math.isfinite(cond):
        raise ValueError(f"ellipsoid's condition number must be finite; got cond={cond!r}")
    d = X.shape[1]
    # Weights exp(log(c) · i/(d−1)): made on X's device, in X's dtype, so nothing crosses devices.
    frac = torch.arange(d, device=X.device, dtype=X.dtype) / max(d - 1, 1)
    weights = torch.exp(frac * math.log(cond))
    return (X * X * weights).sum(dim=1)


def rosenbrock(X: torch.Tensor) -> torch.Tensor:
    """f(x) = Σ_{i=0}^{d-2} 100 (x_{i+1} − x_i²)² + (1 − x_i)², for d >= 2.

    ``X``: ``n × d``; returns ``(n,)`` on X's device/dtype. Minimum 0 at (1, …, 1), at the end of
    a long curved valley.
    """
    X = _check_points(X, "rosenbrock", min_dim=2)
    head, tail = X[:, :-1], X[:, 1:]
    return (100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2).sum(dim=1)


def rastrigin(X: torch.Tensor) -> torch.Tensor:
    """f(x) = 10 d + Σ (x_i² − 10 cos 2π x_i): a bowl covered in a grid of local minima.

    Written as Σ x_i² + 10 (1 − cos 2π x_i), the same function term by term; it avoids
    subtracting 10 d from a sum of similar size, so the value at the optimum is exactly 0 in any
    dtype. ``X``: ``n × d``; returns ``(n,)`` on X's device/dtype. Minimum 0 at 0.
    """
    X = _check_points(X, "rastrigin")
    return (X * X + 10.0 * (1.0 - torch.cos((2.0 * math.pi) * X))).sum(dim=1)


# -- the registry ---------------------------------------------------------------------------------
def _zeros(d: int) -> torch.Tensor:
    return torch.zeros(d, dtype=torch.float64)


def _ones(d: int) -> torch.Tensor:
    return torch.ones(d, dtype=torch.float64)


@dataclass(frozen=True)
class TestFunction:
    """A test function with what an experiment needs around it.

    Attributes:
        name: the registry key.
        fn: the batched function, ``n × d`` tensor -> ``(n,)`` tensor (see the module table).
        argmin: ``d -> (d,)`` float64 CPU tensor, the global minimizer (value 0).
        start_radius: distance of the default start :meth:`x0` from the optimum.
        box: the 2-D plotting box ``((x_min, x_max), (y_min, y_max))`` used by
            :class:`FunctionTask`; it contains every 2-D default start.
        min_dim: the smallest dimension the function is defined for.
    """

    # Not a pytest test class, despite the name.
    __test__ = False

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    argmin: Callable[[int], torch.Tensor]
    start_radius: float
    box: Box
    min_dim: int = 1

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """``fn(X)``: ``n × d`` -> ``(n,)`` on X's device and dtype."""
        return self.fn(X)

    def optimum(
        self, d: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """The global minimizer in dimension ``d``, a ``(d,)`` tensor (value 0 there)."""
        d = _check_dim(d, self.name, self.min_dim)
        return self.argmin(d).to(device=device, dtype=dtype)

    def x0(
        self,
        d: int,
        seed: int = 0,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """A default start in dimension ``d``: a ``(d,)`` tensor, a function of ``(d, seed)`` only.

        The start lies at distance exactly ``start_radius`` from the optimum in a direction drawn
        uniformly on the sphere (a normalised Gaussian from a CPU generator seeded with ``seed``),
        so it is never the optimum, and it is the same on every device (drawn on the CPU in
        float64, then moved).
        """
        d = _check_dim(d, self.name, self.min_dim)
        if integer(seed) is None or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got seed={seed!r}")
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        u = torch.randn(d, generator=g, dtype=torch.float64)
        norm = torch.linalg.vector_norm(u)
        if float(norm) == 0.0:  # a measure-zero draw; fall back to the first axis
            u = torch.zeros(d, dtype=torch.float64)
            u[0] = 1.0
        else:
            u = u / norm
        return (self.argmin(d) + self.start_radius * u).to(device=device, dtype=dtype)


FUNCTIONS: dict[str, TestFunction] = {
    "sphere": TestFunction("sphere", sphere, _zeros, 3.0, ((-5.0, 5.0), (-5.0, 5.0))),
    "ellipsoid": TestFunction("ellipsoid", ellipsoid, _zeros, 3.0, ((-5.0, 5.0), (-5.0, 5.0))),
    "rosenbrock": TestFunction(
        "rosenbrock", rosenbrock, _ones, 1.5, ((-2.0, 3.0), (-1.0, 3.0)), min_dim=2
    ),
    "rastrigin": TestFunction("rastrigin", rastrigin, _zeros, 3.0, ((-5.12, 5.12), (-5.12, 5.12))),
}
"""The test functions by name."""


def get_function(name: str) -> TestFunction:
    """The :class:`TestFunction` called ``name``; a ``ValueError`` lists the valid names."""
    try:
        return FUNCTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown test function {name!r}; valid names: {', '.join(sorted(FUNCTIONS))}"
        ) from None


# -- the task -------------------------------------------------------------------------------------
# Colours of the candidate marker (RGB): a red disc in a white ring; a point outside the plotted
# box is drawn on the box's edge as a hollow orange ring, so it is visible but not mistaken.
_RED = np.array([228, 26, 28], dtype=np.uint8)
_WHITE = np.array([255, 255, 255], dtype=np.uint8)
_ORANGE = np.array([255, 127, 0], dtype=np.uint8)


class FunctionTask:
    """The Task for a test function: ``score`` gives its values, ``render`` draws 2-D candidates.

    Args:
        function: a :class:`TestFunction` or a registry name (``"sphere"``, ...).
        d: the dimension of a candidate; candidates are ``m × d`` tensors.
        image_size: side of each rendered PNG in pixels (64 to 512; renders are square).
        box: the plotted region ``((x_min, x_max), (y_min, y_max))``; the function's own
            :attr:`TestFunction.box` when ``None``.

    It honours :class:`labkit.tasks.base.Task`: ``maximize`` is ``False`` (lower scores are
    better, which a judge built from this task needs to know:
    ``TopKJudge(task.score, maximize=task.maximize)``) and ``mime`` is ``"image/png"``.
    """

    maximize: bool = False
    mime: str = "image/png"

    def __init__(
        self,
        function: TestFunction | str,
        *,
        d: int = 2,
        image_size: int = 96,
        box: Box | None = None,
    ) -> None:
        self.function = function if isinstance(function, TestFunction) else get_function(function)
        self.d: int = _check_dim(d, self.function.name, self.function.min_dim)
        if integer(image_size) is None or not 64 <= image_size <= 512:
            raise ValueError(f"image_size must be an int in [64, 512] pixels; got {image_size!r}")
        self.image_size: int = int(image_size)
        self.box: Box = _check_box(self.function.box if box is None else box)
        self._background: np.ndarray | None = None  # the contour plot, drawn on first render

    def __repr__(self) -> str:
        return f"FunctionTask({self.function.name!r}, d={self.d}, image_size={self.image_size})"

    def x0(self, seed: int = 0, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The function's default start in this task's dimension, a ``(d,)`` CPU tensor."""
        return self.function.x0(self.d, seed, dtype=dtype)

    def optimum(self, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The global minimizer in this task's dimension, a ``(d,)`` CPU tensor."""
        return self.function.optimum(self.d, dtype=dtype)

    def _check_candidates(self, X: Any) -> torch.Tensor:
        X = _check_points(X, f"FunctionTask({self.function.name!r})")
        if X.shape[1] != self.d:
            raise ValueError(
                f"this task's candidates have d={self.d} coordinates; got shape {tuple(X.shape)}"
            )
        return X

    def score(self, X: torch.Tensor) -> torch.Tensor:
        """Function values of the ``m × d`` candidates: ``(m,)`` on X's device; lower is better."""
        return self.function(self._check_candidates(X))

    def render(self, X: torch.Tensor) -> list[bytes]:
        """One PNG (bytes) per row of the ``m × 2`` candidates: the contour plot, candidate marked.

        Only ``d = 2`` can be drawn. The contour plot (log-scaled levels, the optimum as a white
        cross) is drawn once per task and cached; each candidate then costs one small marker and
        one PNG encoding. Non-finite candidates are refused with a ``ValueError``.
        """
        X = self._check_candidates(X)
        if self.d != 2:
            raise ValueError(f"FunctionTask can draw only 2-D candidates; this task has d={self.d}")
        # Rendering is for the person, not the hot path: one transfer to the host is fine.
        P = X.detach().to(device="cpu", dtype=torch.float64).numpy()
        bad = ~np.isfinite(P).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"candidate {row} is not finite: {P[row].tolist()}; cannot draw it")
        background = self._contour_background()
        return [self._draw_marker(background, float(x), float(y)) for x, y in P]

    # -- drawing ----------------------------------------------------------------------------------
    def _contour_background(self) -> np.ndarray:
        """The ``size × size × 3`` uint8 contour image, drawn with Agg on first use and cached."""
        if self._background is not None:
            return self._background
        # Matplotlib's object API with an explicit Agg canvas: no pyplot, no global backend
        # switch, nothing left open.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        size = self.image_size
        (x_lo, x_hi), (y_lo, y_hi) = self.box
        n = 2 * size  # grid a little finer than the pixels, so contours stay smooth
        gx = torch.linspace(x_lo, x_hi, n, dtype=torch.float64)
        gy = torch.linspace(y_lo, y_hi, n, dtype=torch.float64)
        YY, XX = torch.meshgrid(gy, gx, indexing="ij")
        F = self.function(torch.stack([XX.reshape(-1), YY.reshape(-1)], dim=1)).reshape(n, n)
        # log1p spreads the levels over orders of magnitude (the ellipsoid spans ~1e7 in the box),
        # so the valley near the optimum is as visible as the walls.
        Z = torch.log1p(F).numpy()

        dpi = 100
        fig = Figure(figsize=(size / dpi, size / dpi), dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # the axes fill the image: pixels <-> data
        ax.set_axis_off()
        ax.contourf(XX.numpy(), YY.numpy(), Z, levels=16, cmap="viridis")
        ax.contour(XX.numpy(), YY.numpy(), Z, levels=16, colors="k", linewidths=0.3, alpha=0.4)
        opt = self.function.optimum(2, dtype=torch.float64).tolist()
        ax.plot([opt[0]], [opt[1]], marker="x", color="white", markersize=size / 16, mew=1.5)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        self._background = np.ascontiguousarray(rgba[:, :, :3])
        return self._background

    def _draw_marker(self, background: np.ndarray, x: float, y: float) -> bytes:
        """The background with a marker at data point ``(x, y)``, encoded as PNG bytes."""
        h, w = background.shape[:2]
        (x_lo, x_hi), (y_lo, y_hi) = self.box
        # Data -> continuous pixel coordinates; image rows grow downward, y grows upward.
        cx = (x - x_lo) / (x_hi - x_lo) * w
        cy = (y_hi - y) / (y_hi - y_lo) * h
        inside = 0.0 <= cx <= w and 0.0 <= cy <= h
        r = max(3.0, w / 20.0)
        if not inside:  # pull the ring just inside the edge nearest the point, whole and visible
            cx, cy = min(max(cx, r + 1.0), w - r - 1.0), min(max(cy, r + 1.0), h - r - 1.0)
        rows, cols = np.ogrid[:h, :w]
        dist2 = (cols + 0.5 - cx) ** 2 + (rows + 0.5 - cy) ** 2
        img = background.copy()
        if inside:
            img[dist2 <= (r + 1.5) ** 2] = _WHITE
            img[dist2 <= r**2] = _RED
        else:
            img[(dist2 <= (r + 1.0) ** 2) & (dist2 >= (r - 1.5) ** 2)] = _ORANGE
        return png_bytes(img)


def _check_box(box: Any) -> Box:
    try:
        (x_lo, x_hi), (y_lo, y_hi) = box
        vals = [float(x_lo), float(x_hi), float(y_lo), float(y_hi)]
    except (TypeError, ValueError):
        raise ValueError(
            f"box must be ((x_min, x_max), (y_min, y_max)) of numbers; got {box!r}"
        ) from None
    if not all(math.isfinite(v) for v in vals) or not (vals[0] < vals[1] and vals[2] < vals[3]):
        raise ValueError(f"box must be finite with x_min < x_max and y_min < y_max; got {box!r}")
    return ((vals[0], vals[1]), (vals[2], vals[3]))
