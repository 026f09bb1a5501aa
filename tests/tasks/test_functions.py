"""Tests of labkit.tasks.functions: values, batching, the registry, and FunctionTask."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from labkit.tasks.base import Task
from labkit.tasks.functions import (
    FUNCTIONS,
    FunctionTask,
    TestFunction,
    ellipsoid,
    get_function,
    rastrigin,
    rosenbrock,
    sphere,
)

NAMES = sorted(FUNCTIONS)


# -- reference implementations, one point at a time in plain Python -----------------------------
def _ref(name: str, x: list[float]) -> float:
    d = len(x)
    if name == "sphere":
        return sum(v * v for v in x)
    if name == "ellipsoid":
        return sum((1e6 ** (i / (d - 1) if d > 1 else 0.0)) * v * v for i, v in enumerate(x))
    if name == "rosenbrock":
        return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(d - 1))
    if name == "rastrigin":
        return 10 * d + sum(v * v - 10 * math.cos(2 * math.pi * v) for v in x)
    raise AssertionError(name)


# -- known values ---------------------------------------------------------------------------------
def test_known_values() -> None:
    t = torch.tensor
    assert sphere(t([[1.0, 2.0], [0.0, -3.0]])).tolist() == [5.0, 9.0]
    # Weights 1 and 1e6 in 2-D; 1, 10, 100 for cond=100 in 3-D; a single weight 1 in 1-D.
    assert ellipsoid(t([[1.0, 1.0]], dtype=torch.float64)).tolist() == pytest.approx([1 + 1e6])
    assert ellipsoid(t([[1.0, 1.0, 1.0]], dtype=torch.float64), cond=100).tolist() == (
        pytest.approx([111.0])
    )
    assert ellipsoid(t([[2.0]])).tolist() == [4.0]
    # Rosenbrock at the origin and at the classic start (−1.2, 1): 100·0.44² + 2.2² = 24.2.
    assert rosenbrock(t([[0.0, 0.0], [-1.2, 1.0]], dtype=torch.float64)).tolist() == (
        pytest.approx([1.0, 24.2])
    )
    # Rastrigin: integer points sit on the cosine's maxima, so only Σx² is left; x = 0.5 on a peak.
    assert rastrigin(t([[1.0, 0.0], [0.5, 0.0]], dtype=torch.float64)).tolist() == (
        pytest.approx([1.0, 20.25])
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [2, 3, 10])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_at_the_optimum_and_positive_elsewhere(name: str, d: int, dtype: torch.dtype) -> None:
    f = FUNCTIONS[name]
    opt = f.optimum(d, dtype=dtype)
    assert opt.shape == (d,) and opt.dtype == dtype
    assert f(opt.unsqueeze(0)).tolist() == [0.0]  # exactly, not approximately
    nudged = opt.clone()
    nudged[-1] += 0.1
    assert f(nudged.unsqueeze(0)).item() > 0


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    n=st.integers(1, 6),
    d=st.integers(2, 6),
    data=st.data(),
)
def test_matches_a_pointwise_reference(name: str, n: int, d: int, data: st.DataObject) -> None:
    rows = data.draw(
        st.lists(
            st.lists(st.floats(-5, 5, allow_nan=False), min_size=d, max_size=d),
            min_size=n,
            max_size=n,
        )
    )
    X = torch.tensor(rows, dtype=torch.float64)
    out = FUNCTIONS[name](X)
    assert out.shape == (n,) and out.dtype == torch.float64
    for i, x in enumerate(rows):
        assert out[i].item() == pytest.approx(_ref(name, x), rel=1e-9, abs=1e-9)
        # Rows are independent: evaluating one alone gives the same value.
        assert FUNCTIONS[name](X[i : i + 1]).item() == pytest.approx(out[i].item(), rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_batch_shapes_dtypes_devices(name: str) -> None:
    f = FUNCTIONS[name]
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        out = f(torch.zeros(7, 4, dtype=dtype))
        assert out.shape == (7,) and out.dtype == dtype
    assert f(torch.zeros(0, 3)).shape == (0,)
    # The meta device has no data: it fails on any op that would mix devices, so this shows every
    # function builds its helpers (ellipsoid's weights) on X's device.
    meta = f(torch.zeros(5, 3, device="meta"))
    assert meta.device.type == "meta" and meta.shape == (5,)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_are_refused(name: str) -> None:
    f = FUNCTIONS[name]
    with pytest.raises(ValueError, match="n × d"):
        f(torch.zeros(3))  # one point without the batch dimension
    with pytest.raises(ValueError, match="n × d"):
        f(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="floating-point"):
        f(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="torch tensor"):
        f(np.zeros((2, 3)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="d >= "):
        f(torch.zeros(2, 0))


def test_rosenbrock_needs_two_dims_and_ellipsoid_a_sane_condition() -> None:
    with pytest.raises(ValueError, match=r"d >= 2; got d=1"):
        rosenbrock(torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"d >= 2"):
        FUNCTIONS["rosenbrock"].optimum(1)
    for bad in (0.5, -3.0, math.inf, math.nan, True):
        with pytest.raises(ValueError, match="cond="):
            ellipsoid(torch.zeros(2, 2), cond=bad)


# -- TestFunction and the registry ----------------------------------------------------------------
def test_registry() -> None:
    assert set(FUNCTIONS) == {"sphere", "ellipsoid", "rosenbrock", "rastrigin"}
    for name, f in FUNCTIONS.items():
        assert isinstance(f, TestFunction) and f.name == name and get_function(name) is f
    with pytest.raises(ValueError, match=r"unknown test function 'shpere'.*rastrigin.*sphere"):
        get_function("shpere")
    with pytest.raises(ValueError, match="valid names"):
        get_function(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_default_start_is_deterministic_and_not_the_optimum(name: str) -> None:
    f = FUNCTIONS[name]
    for d in (2, 3, 7):
        starts = [f.x0(d, seed) for seed in range(20)]
        for seed, x in enumerate(starts):
            assert x.shape == (d,) and x.dtype == torch.float32
            assert torch.equal(x, f.x0(d, seed))  # a function of (d, seed) only
            dist = torch.linalg.vector_norm(x.double() - f.optimum(d, dtype=torch.float64))
            assert dist.item() == pytest.approx(f.start_radius, rel=1e-6)
            assert f(x.unsqueeze(0)).item() > 0
        assert len({tuple(x.tolist()) for x in starts}) == 20  # seeds give different starts
    # Every 2-D start lies in the plotting box, so FunctionTask draws it.
    (x_lo, x_hi), (y_lo, y_hi) = f.box
    for seed in range(50):
        x, y = f.x0(2, seed).tolist()
        assert x_lo < x < x_hi and y_lo < y < y_hi
    x64 = f.x0(3, 5, dtype=torch.float64, device="meta")
    assert x64.dtype == torch.float64 and x64.device.type == "meta"


def test_default_start_refuses_bad_arguments() -> None:
    f = FUNCTIONS["sphere"]
    for bad_d in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="dimension"):
            f.x0(bad_d)  # type: ignore[arg-type]
    for bad_seed in (-1, 1.5, None, True):
        with pytest.raises(ValueError, match="seed"):
            f.x0(2, bad_seed)  # type: ignore[arg-type]


# -- FunctionTask ---------------------------------------------------------------------------------
def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"))


def test_task_scores_are_the_function_values() -> None:
    task = FunctionTask("rosenbrock", d=5)
    X = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(task.score(X), rosenbrock(X))
    assert task.maximize is False and task.mime == "image/png"
    assert isinstance(task, Task)
    assert task.x0(3).shape == (5,) and torch.equal(task.optimum(), torch.ones(5))
    with pytest.raises(ValueError, match="d=5 coordinates"):
        task.score(torch.zeros(6, 4))
    assert FunctionTask(FUNCTIONS["sphere"]).function is FUNCTIONS["sphere"]
    with pytest.raises(ValueError, match="unknown test function"):
        FunctionTask("nope")


def test_render_one_png_per_candidate_with_the_marker_in_place() -> None:
    size = 80
    task = FunctionTask("sphere", image_size=size)  # box (−5, 5)²
    X = torch.tensor([[0.0, 0.0], [2.5, 2.5], [2.5, 2.5], [-4.0, 1.0]])
    pngs = task.render(X)
    assert isinstance(pngs, list) and len(pngs) == 4
    assert all(isinstance(p, bytes) for p in pngs)
    imgs = [_decode(p) for p in pngs]
    assert all(im.shape == (size, size, 3) for im in imgs)
    assert pngs[1] == pngs[2]  # the same candidate draws the same image
    assert len({pngs[0], pngs[1], pngs[3]}) == 3
    red = np.array([228, 26, 28])

    def pixel(im: np.ndarray, x: float, y: float) -> np.ndarray:
        col = int((x + 5) / 10 * size)
        row = int((5 - y) / 10 * size)
        return im[min(row, size - 1), min(col, size - 1)]

    # The marker sits where the data point is (columns grow with x, rows shrink with y) ...
    assert np.array_equal(pixel(imgs[1], 2.5, 2.5), red)
    assert np.array_equal(pixel(imgs[3], -4.0, 1.0), red)
    # ... and nowhere else: away from it the image is the contour background.
    assert not np.array_equal(pixel(imgs[1], -4.0, 1.0), red)
    assert np.array_equal(imgs[1][:, :20], imgs[0][:, :20])


def test_render_marks_points_outside_the_box_on_its_edge() -> None:
    task = FunctionTask("sphere", image_size=64)
    inside, outside = (_decode(p) for p in task.render(torch.tensor([[0.0, 0.0], [100.0, 0.0]])))
    orange = np.array([255, 127, 0])
    assert not (inside == orange).all(axis=2).any()
    hits = np.argwhere((outside == orange).all(axis=2))
    assert len(hits) > 0 and hits[:, 1].min() > 64 * 0.75  # a ring at the right edge


def test_render_draws_the_contour_once() -> None:
    task = FunctionTask("ellipsoid", image_size=96)
    task.render(torch.zeros(1, 2))
    background = task._background
    assert background is not None
    X = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    pngs = task.render(X)
    # The contour is drawn once and reused (its time: ~1 ms a candidate once cached).
    assert task._background is background and len(pngs) == 16


def test_render_refuses_what_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="only 2-D candidates"):
        FunctionTask("sphere", d=3).render(torch.zeros(2, 3))
    task = FunctionTask("sphere")
    with pytest.raises(ValueError, match=r"candidate 1 is not finite"):
        task.render(torch.tensor([[0.0, 0.0], [math.nan, 1.0]]))
    with pytest.raises(ValueError, match="d=2 coordinates"):
        task.render(torch.zeros(2, 3))
    for bad_size in (10, 1000, 96.0):
        with pytest.raises(ValueError, match="image_size"):
            FunctionTask("sphere", image_size=bad_size)  # type: ignore[arg-type]
    for bad_box in (((1.0, -1.0), (0.0, 1.0)), ((0.0, math.inf), (0.0, 1.0)), (0.0, 1.0)):
        with pytest.raises(ValueError, match="box"):
            FunctionTask("sphere", box=bad_box)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_values_on_cuda_stay_there_and_match_the_cpu(name: str) -> None:
    X = torch.randn(16, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = FUNCTIONS[name](X.cuda())
    assert out.device.type == "cuda" and out.shape == (16,)
    torch.testing.assert_close(out.cpu(), FUNCTIONS[name](X))
    assert FUNCTIONS[name].x0(5, 3, device="cuda").cpu().equal(FUNCTIONS[name].x0(5, 3))
