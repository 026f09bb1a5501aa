"""Where candidates are evaluated: in this process (the default) or on a Ray cluster.

An *executor* maps a picklable, module-level function over a list of work items and returns
the results in order. A task that can spread its work (``labkit.tasks.control.ControlTask``)
splits the ``m`` candidates of a round into ``executor.workers`` contiguous chunks and hands one
chunk to each call, so the same seeds give the same numbers wherever a chunk runs.

```
executor.map(fn, [chunk_0, chunk_1, ...])  ->  [fn(chunk_0), fn(chunk_1), ...]
```

Executors:

* :class:`InProcessExecutor` — a plain loop in the calling process; ``workers == 1``.
* :class:`RayExecutor` — one Ray task per chunk (``pip install labkit[ray]``). On a laptop,
  ``RayExecutor(num_cpus=4)`` starts a local Ray instance with four worker processes. To use an
  existing cluster, start it as Ray documents (``ray start --head`` on the head node,
  ``ray start --address=HEAD:6379`` on the others) and connect to it:

  .. code-block:: python

      from labkit.executors import RayExecutor
      from labkit.tasks.control import ControlTask

      ex = RayExecutor(address="auto")            # the cluster this machine belongs to
      ex = RayExecutor(address="ray://HEAD:10001")  # or through Ray Client from outside it
      task = ControlTask("HalfCheetah-v5", executor=ex)

  Every node needs the same Python packages as the driver (labkit, gymnasium, mujoco); pass
  ``init_kwargs={"runtime_env": {...}}`` when they must be installed on the fly. If Ray is
  already initialized when the executor is made (``ray.init`` called by you), it is used as is
  and :meth:`RayExecutor.shutdown` leaves it running.

Results are bit-identical between executors as long as ``fn`` is deterministic in its item:
the work is split the same way and each item carries its own seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Executor", "InProcessExecutor", "RayExecutor", "as_executor", "split"]

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Maps a function over work items, results in item order.

    Attributes:
        workers: how many items it can run at once; tasks split their work into this many chunks.
    """

    workers: int

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[fn(item) for item in items]``, possibly in parallel; ``fn`` must be picklable."""
        ...


class InProcessExecutor:
    """Runs every item in the calling process, one after another (``workers == 1``)."""

    workers: int = 1

    def __repr__(self) -> str:
        return "InProcessExecutor()"

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]``."""
        return [fn(item) for item in items]


class RayExecutor:
    """Runs each item as a Ray task, on a local Ray instance or a cluster.

    Args:
        address: ``None`` starts a local instance (or uses the one already running in this
            process); ``"auto"`` joins the cluster this machine belongs to; ``"ray://host:10001"``
            connects through Ray Client.
        num_cpus: CPUs of a local instance started here (``None``: Ray counts them). Refused
            together with an ``address``: a cluster's CPUs are set where it was started.
        workers: chunks per call (default: the cluster's CPU count when the executor is made).
        init_kwargs: further keyword arguments of ``ray.init`` (e.g. ``runtime_env``).

    Raises ``ImportError`` with the install line when Ray is missing.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        workers: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        try:
            import ray
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "RayExecutor needs Ray: pip install 'labkit[ray]' (or pip install ray)"
            ) from err
        if num_cpus is not None and (
            isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1
        ):
            raise ValueError(f"num_cpus must be None or an int >= 1; got {num_cpus!r}")
        if num_cpus is not None and address is not None:
            raise ValueError(
                f"num_cpus={num_cpus} sizes a local instance; a cluster at address={address!r} "
                "has the CPUs it was started with"
            )
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ValueError(f"workers must be None or an int >= 1; got {workers!r}")
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            kwargs.update(init_kwargs or {})
            ray.init(address=address, num_cpus=num_cpus, **kwargs)
            self._started = True
        self.workers: int = (
            workers if workers is not None else max(1, int(ray.cluster_resources().get("CPU", 1)))
        )
        self._apply: Any = None

    def __repr__(self) -> str:
        return f"RayExecutor(workers={self.workers})"

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """One Ray task per item; blocks until all are done and returns their results in order."""
        if self._apply is None:
            # One remote wrapper that calls whatever it is sent: Ray's decorator takes only
            # Python functions, and this way builtins and callable objects work too.
            self._apply = self._ray.remote(_apply)
        fn_ref = self._ray.put(fn)  # shipped once per call, not once per item
        refs = [self._apply.remote(fn_ref, item) for item in items]
        return list(self._ray.get(refs))

    def shutdown(self) -> None:
        """Stop the local Ray instance if this executor started it (else leave Ray running)."""
        if self._started:
            self._ray.shutdown()
            self._started = False


def _apply(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def as_executor(executor: Executor | str | None) -> Executor:
    """``None`` or ``"inprocess"``: :class:`InProcessExecutor`; ``"ray"``: a :class:`RayExecutor`
    with default arguments; an object with ``map`` and ``workers``: itself."""
    if executor is None or executor == "inprocess":
        return InProcessExecutor()
    if executor == "ray":
        return RayExecutor()
    if isinstance(executor, str):
        raise ValueError(f"unknown executor {executor!r}; give 'inprocess', 'ray' or an Executor")
    if not isinstance(executor, Executor):
        raise ValueError(
            f"executor must have a map(fn, items) method and a workers count; got {executor!r}"
        )
    return executor


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into at most ``parts`` contiguous, non-empty ``(start, stop)`` spans of
    sizes differing by at most one (the first ones take the remainder)."""
    if n < 0 or parts < 1:
        raise ValueError(f"need n >= 0 and parts >= 1; got n={n}, parts={parts}")
    parts = min(parts, n)
    spans, start = [], 0
    for p in range(parts):
        size = n // parts + (1 if p < n % parts else 0)
        spans.append((start, start + size))
        start += size
    return spans
