"""Tests of labkit.executors: splitting work, the in-process executor, and Ray (if installed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.executors import Executor, InProcessExecutor, as_executor, split


@settings(deadline=None)  # a stall of the shared machine is not a failure of split()
@given(st.integers(0, 200), st.integers(1, 40))
def test_split_covers_the_range_in_even_contiguous_spans(n: int, parts: int) -> None:
    spans = split(n, parts)
    assert len(spans) == min(n, parts)
    assert [i for a, b in spans for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in spans]
    assert all(s >= 1 for s in sizes)
    if sizes:
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)


def test_split_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="parts >= 1"):
        split(3, 0)


def test_in_process_executor_keeps_order() -> None:
    ex = InProcessExecutor()
    assert ex.workers == 1
    assert ex.map(lambda v: v * v, [3, 1, 2]) == [9, 1, 4]
    assert isinstance(ex, Executor)


def test_as_executor() -> None:
    assert isinstance(as_executor(None), InProcessExecutor)
    assert isinstance(as_executor("inprocess"), InProcessExecutor)
    ex = InProcessExecutor()
    assert as_executor(ex) is ex
    with pytest.raises(ValueError, match="unknown executor 'threads'"):
        as_executor("threads")
    with pytest.raises(ValueError, match="must have a map"):
        as_executor(object())  # type: ignore[arg-type]


# -- Ray ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # pragma: no cover - someone else's instance: do not touch it
        pytest.skip("a Ray instance is already running in this process")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_executor_gives_identical_returns_and_views(local_ray: Any) -> None:
    pytest.importorskip("gymnasium")
    from labkit.executors import RayExecutor
    from labkit.tasks.control import ControlTask

    ex = RayExecutor()
    assert ex.workers == 2
    assert ex.map(abs, [-1, 2, -3]) == [1, 2, 3]
    g = torch.Generator().manual_seed(0)
    local = ControlTask("Pendulum-v1", horizon=50, seed=3, max_frames=6, width=64)
    remote = ControlTask("Pendulum-v1", horizon=50, seed=3, max_frames=6, width=64, executor=ex)
    X = 0.5 * torch.randn(5, local.n_params, generator=g)
    assert torch.equal(local.score(X), remote.score(X))
    assert local.render(X[:2]) == remote.render(X[:2])
    ex.shutdown()  # not started by the executor: leaves the test's instance running
    assert local_ray.is_initialized()


def test_ray_executor_refuses_num_cpus_with_an_address() -> None:
    pytest.importorskip("ray")
    from labkit.executors import RayExecutor

    with pytest.raises(ValueError, match="num_cpus=2 sizes a local instance"):
        RayExecutor(address="auto", num_cpus=2)
