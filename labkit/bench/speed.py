"""``labkit bench speed``: wall time and memory of one ZO-RankSGD round, against two yardsticks.

For every dimension d and round size m it measures one ``ask()`` + ``tell(ranking)`` of
:class:`labkit.optim.ZORankSGD` (line search off, a full ranking), in both memory modes,

* ``stored``: Ξ (m × d) is kept from ``ask`` to ``tell`` — one draw of m·d normal numbers;
* ``regenerate``: only the round's seed is kept and ``tell`` draws Ξ again tile by tile — two
  draws, but the optimizer is meant to hold only x, g and about one tile whatever m is;

and compares them with

* **numpy**: :class:`labkit.bench._numpy_ref.NumpyRankSGD`, the same estimator written the
  straightforward way (all m perturbed points stored, Python loops over candidates), always on
  the CPU, in the same run;
* **floor**: the time torch needs just to draw the m·d Gaussian numbers once into a buffer that
  already exists, on the benchmark's device — no optimizer can produce m fresh candidates faster.

Timing: the median of ``--repeats`` rounds after one warm-up round (which is not timed), as wall
time and as the process's CPU time (which does not count the time spent waiting for a core on a
shared machine); ``torch.cuda.synchronize()`` closes every timed round on a GPU. One torch thread
by default (``--threads``): NumPy and torch's CPU normal generator are single-threaded, and on a
busy machine a parallel region waits for its slowest thread.

Memory: the peak of the optimizer's *own* allocations — its persistent state (x, and Ξ in stored
mode) plus every temporary during ask + tell — not counting the returned candidate tensor X, which
belongs to the caller (m·d by contract). How it is measured:

* torch on the CPU: the profiler's memory events (``torch.profiler.profile(profile_memory=True)``),
  which report every allocation and free of torch's CPU allocator with its address, size and the
  running total allocated since the profiler started. The optimizer is built inside the profiled
  region and one round is run; each X is identified by its address, tracked from its allocation
  to its free, and subtracted from the running total at every event; the peak of what is left is
  the figure. (``tracemalloc`` does not see torch, and RSS deltas are blurred by the C allocator
  keeping or reusing freed pages.)
* torch on CUDA: ``torch.cuda.max_memory_allocated()`` minus the allocation before the optimizer
  was built, minus X.
* numpy: ``tracemalloc`` (NumPy registers its array buffers with it): peak of the round minus X.

Memory is measured on an optimizer of its own (built inside the measurement), before timing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labkit.bench._common import bench_parser, parse_args, positive_int, write_json
from labkit.bench._numpy_ref import NumpyRankSGD
from labkit.devices import resolve_device
from labkit.optim.zo_ranksgd import ZORankSGD

__all__ = ["main", "run_speed"]

#: What ``--help`` says the benchmark does.
_DESCRIPTION = (
    "Wall time and peak memory of one ZO-RankSGD ask+tell, in both memory modes, against "
    "a straightforward numpy implementation (on the CPU) and the floor: drawing the m·d "
    "normal numbers once."
)

# Hyperparameters do not change the cost of a round; these just keep the iterate finite.
_LR = 1e-3
_MU = 1e-2
#: Bytes of the marker allocation made right after each ask (see _torch_cpu_peak).
_MARKER_BYTES = 7919
_FLOAT_BYTES = 4  # float32, the house default; memory is reported in d float32 numbers

_FULL_DIMS = (10_000, 1_000_000, 10_000_000)
_FULL_MS = (8, 64)
_QUICK_DIMS = (10_000, 100_000)
_QUICK_MS = (8,)


# -- helpers --------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(
    step: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median wall time and median process CPU time, in seconds, of ``repeats`` calls of ``step``.

    The result of ``step`` is dropped outside the timed region. CPU time (all threads of the
    process, user + system) does not grow while the process waits for a core, so on a shared
    machine it is the steadier of the two; on an idle one with one thread they agree.
    """
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeats):
        _sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        out = step()
        _sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        del out  # freeing the caller's X is the caller's cost, not the round's
    return statistics.median(wall), statistics.median(cpu)


def _full_ranking(m: int) -> tuple[int, ...]:
    # A full ranking (k = m): the most edges, the most expensive ranking to turn into g.
    return tuple(range(m))


def _make_zorank(d: int, m: int, regenerate: bool, device: torch.device) -> ZORankSGD:
    return ZORankSGD(
        torch.zeros(d, device=device), lr=_LR, mu=_MU, m=m, seed=0, regenerate=regenerate
    )


def _zorank_round(opt: ZORankSGD, ranking: tuple[int, ...]) -> torch.Tensor:
    X = opt.ask()
    opt.tell(ranking)
    return X


# -- memory ---------------------------------------------------------------------------------------
def _memory_events(prof: torch.profiler.profile) -> list[tuple[int, int, int]]:
    """(address, bytes, total allocated) of each allocator event, in order (bytes < 0: a free)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
    events = [e for e in trace["traceEvents"] if e.get("name") == "[memory]"]
    events.sort(key=lambda e: (e["ts"], e["args"].get("Ev Idx", 0)))
    return [
        (int(e["args"]["Addr"]), int(e["args"]["Bytes"]), int(e["args"]["Total Allocated"]))
        for e in events
    ]


def _peak_without(events: list[tuple[int, int, int]], x_addrs: Sequence[int], x_bytes: int) -> int:
    """Peak of the running total minus the candidate tensors X and the markers.

    An allocation at one of ``x_addrs`` of exactly ``x_bytes`` is an X only if it is still live
    when that round's marker (a ``_MARKER_BYTES`` allocation made right after ``ask`` returned)
    appears; a scratch buffer that happened to reuse the address earlier has been freed by then.
    """
    # 1. Pair every allocation with its free: intervals [start, end) in event order.
    open_at: dict[int, tuple[int, int]] = {}
    intervals: list[tuple[int, int, int, int]] = []  # (start, end, addr, bytes)
    for idx, (addr, nbytes, _total) in enumerate(events):
        if nbytes > 0:
            open_at[addr] = (idx, nbytes)
        elif addr in open_at:
            start, size = open_at.pop(addr)
            intervals.append((start, idx, addr, size))
    intervals += [(start, len(events), addr, size) for addr, (start, size) in open_at.items()]
    # 2. The markers, in order, and the X live at each of them.
    markers = [iv for iv in intervals if iv[3] == _MARKER_BYTES]
    markers.sort()
    excluded = list(markers)
    for (m_start, _, _, _), addr in zip(markers, x_addrs, strict=True):
        live = [iv for iv in intervals if iv[2] == addr and iv[3] == x_bytes]
        live = [iv for iv in live if iv[0] < m_start < iv[1]]
        if len(live) != 1:
            raise RuntimeError(f"could not find the candidate tensor X at address {addr:#x}")
        excluded.append(live[0])
    # 3. Running total minus whatever excluded block is live at each event.
    peak = 0
    for idx, (_addr, _nbytes, total) in enumerate(events):
        held = sum(size for start, end, _, size in excluded if start <= idx < end)
        peak = max(peak, total - held)
    return peak


def _torch_cpu_peak(make: Callable[[], ZORankSGD], ranking: tuple[int, ...]) -> int:
    """Build the optimizer and run one round under the memory profiler; peak bytes beyond X."""
    from torch.profiler import ProfilerActivity, profile

    addrs: list[int] = []
    x_bytes = 0
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        opt = make()
        X = opt.ask()
        marker = torch.empty(_MARKER_BYTES, dtype=torch.uint8)  # "X is live now" (see above)
        del marker
        addrs.append(X.data_ptr())
        x_bytes = X.numel() * X.element_size()
        opt.tell(ranking)
        del X, opt
    return _peak_without(_memory_events(prof), addrs, x_bytes)


def _torch_cuda_peak(make: Callable[[], ZORankSGD], ranking: tuple[int, ...]) -> int:
    """Peak CUDA allocation of building the optimizer and one round, beyond X (caching ignored)."""
    device = torch.device("cuda")
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    opt = make()
    X = opt.ask()
    opt.tell(ranking)
    _sync(device)
    # X is the first large allocation of ask and lives to the end, so it is inside every peak.
    peak = torch.cuda.max_memory_allocated(device) - base - X.numel() * X.element_size()
    del X, opt
    return int(peak)


def _numpy_round(opt: NumpyRankSGD, ranking: tuple[int, ...]) -> np.ndarray:
    X = opt.ask()
    opt.tell(ranking)
    return X


def _numpy_peak(d: int, m: int, ranking: tuple[int, ...]) -> tuple[int, NumpyRankSGD]:
    """Build the numpy reference and run one round under tracemalloc; peak bytes beyond X."""
    x0 = np.zeros(d, dtype=np.float32)  # the caller's, made before tracing starts
    tracemalloc.start()
    try:
        opt = NumpyRankSGD(x0, lr=_LR, mu=_MU, m=m, seed=0)
        X = _numpy_round(opt, ranking)
        peak = tracemalloc.get_traced_memory()[1] - X.nbytes  # X is allocated first in ask
    finally:
        tracemalloc.stop()
    return int(peak), opt


# -- the benchmark --------------------------------------------------------------------------------
def _floor_time(d: int, m: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median time to fill an existing m·d buffer with N(0, 1) numbers (the buffer is freed)."""
    buf = torch.empty(m * d, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    buf.normal_(generator=gen)  # warm-up (also touches every page of buf)
    return _median_time(lambda: buf.normal_(generator=gen), repeats, device)


def _measure(d: int, m: int, device: torch.device, repeats: int, numpy_ref: bool) -> dict[str, Any]:
    ranking = _full_ranking(m)
    row: dict[str, Any] = {"d": d, "m": m, "device": str(device)}

    # 1. The floor: m·d standard normal numbers drawn once into an existing buffer.
    row["floor_s"], row["floor_cpu_s"] = _floor_time(d, m, device, repeats)

    # 2. ZO-RankSGD in both memory modes: memory on a fresh optimizer (its construction included),
    # then one warm-up round and the timed rounds on another.
    peak_fn = _torch_cuda_peak if device.type == "cuda" else _torch_cpu_peak
    for mode, regenerate in (("stored", False), ("regenerate", True)):
        row[f"{mode}_mem_bytes"] = peak_fn(partial(_make_zorank, d, m, regenerate, device), ranking)
        opt = _make_zorank(d, m, regenerate, device)
        _zorank_round(opt, ranking)  # warm-up (X dropped at once)
        row[f"{mode}_s"], row[f"{mode}_cpu_s"] = _median_time(
            partial(_zorank_round, opt, ranking), repeats, device
        )
        del opt
    row["auto_mode"] = _auto_mode(d, m)
    row["auto_s"] = row[f"{row['auto_mode']}_s"]
    row["auto_cpu_s"] = row[f"{row['auto_mode']}_cpu_s"]

    # 3. The numpy reference on the CPU; its first round is the memory measurement and warm-up.
    if numpy_ref:
        row["numpy_mem_bytes"], ref = _numpy_peak(d, m, ranking)
        row["numpy_s"], row["numpy_cpu_s"] = _median_time(
            partial(_numpy_round, ref, ranking), repeats, torch.device("cpu")
        )
        del ref
    return row


def _auto_mode(d: int, m: int) -> str:
    """The mode ``regenerate=None`` picks, asked of the optimizer itself (x0 of d zeros)."""
    opt = ZORankSGD(torch.zeros(d), lr=_LR, mu=_MU, m=m, seed=0)
    return "regenerate" if opt.regenerate else "stored"


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_speed(
    *,
    dims: Sequence[int],
    ms: Sequence[int],
    repeats: int,
    device: str = "cpu",
    numpy_ref: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure every (d, m); returns ``{"machine": ..., "config": ..., "rows": [...]}``.

    Times are seconds, memory is bytes (see the module docstring for both methods).
    """
    dev = resolve_device(device, name="--device")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    from tqdm.auto import tqdm

    pairs = [(d, m) for d in dims for m in ms]
    rows = []
    bar = tqdm(pairs, desc="bench speed", unit="config", disable=not progress, file=sys.stderr)
    for d, m in bar:
        bar.set_postfix_str(f"d={d:.0e} m={m}")
        rows.append(_measure(d, m, dev, repeats, numpy_ref))
    return {
        "machine": machine_info(dev),
        "config": {
            "dims": list(dims),
            "ms": list(ms),
            "repeats": repeats,
            "device": str(dev),
            "lr": _LR,
            "mu": _MU,
            "ranking": "full (k = m)",
        },
        "rows": rows,
    }


# -- report ---------------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds < 10 else f"{seconds * 1e3:.0f}"


def _in_d(nbytes: int, d: int) -> str:
    return f"{nbytes / (_FLOAT_BYTES * d):.2f}"


def _pair(r: dict[str, Any], key: str) -> str:
    """``wall / cpu`` milliseconds of measurement ``key``."""
    return f"{_ms(r[key + '_s'])} / {_ms(r[key + '_cpu_s'])}"


def _ratio(r: dict[str, Any], top: str, bottom: str) -> str:
    """``wall / cpu`` ratio of two measurements."""
    wall = r[top + "_s"] / r[bottom + "_s"]
    cpu = r[top + "_cpu_s"] / r[bottom + "_cpu_s"]
    return f"{wall:.2f} / {cpu:.2f}"


def markdown_table(result: dict[str, Any]) -> str:
    """The rows as a markdown table: times in ms as ``wall / cpu``, memory in d float32 numbers."""
    has_numpy = all("numpy_s" in r for r in result["rows"])
    head = [
        "d",
        "m",
        "floor ms",
        "ZO-RankSGD ms",
        "mode",
        "ZO ÷ floor",
        "stored ms",
        "regen. ms",
        "mem stored ·d",
        "mem regen. ·d",
    ]
    if has_numpy:
        head += ["numpy ms", "numpy ÷ ZO", "numpy mem ·d"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        d = r["d"]
        cells = [
            f"10^{round(math.log10(d))}" if d == 10 ** round(math.log10(d)) else str(d),
            str(r["m"]),
            _pair(r, "floor"),
            _pair(r, "auto"),
            r["auto_mode"],
            _ratio(r, "auto", "floor"),
            _pair(r, "stored"),
            _pair(r, "regenerate"),
            _in_d(r["stored_mem_bytes"], d),
            _in_d(r["regenerate_mem_bytes"], d),
        ]
        if has_numpy:
            cells += [_pair(r, "numpy"), _ratio(r, "numpy", "auto"), _in_d(r["numpy_mem_bytes"], d)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def target_lines(result: dict[str, Any]) -> list[str]:
    """The issue's targets, each checked against the rows that exist (others: not measured).

    Time targets are checked on wall time and, separately, on CPU time (see ``_median_time``).
    """
    rows = {(r["d"], r["m"]): r for r in result["rows"]}
    cuda = result["config"]["device"].startswith("cuda")
    out = []
    r = rows.get((1_000_000, 8))
    if r is not None and not cuda:
        for clock in ("", "_cpu"):
            name = "wall" if not clock else "cpu"
            ratio = r[f"auto{clock}_s"] / r[f"floor{clock}_s"]
            out.append(
                f"d=10^6, m=8 ({name}): ZO-RankSGD / floor = {ratio:.2f} (target <= 1.5): "
                + _verdict(ratio <= 1.5)
            )
            if "numpy_s" in r:
                speedup = r[f"numpy{clock}_s"] / r[f"auto{clock}_s"]
                out.append(
                    f"d=10^6, m=8 ({name}): numpy / ZO-RankSGD = {speedup:.2f} (target >= 2): "
                    + _verdict(speedup >= 2)
                )
    r = rows.get((10_000_000, 64))
    if r is not None:
        mem = r["regenerate_mem_bytes"] / (_FLOAT_BYTES * r["d"])
        out.append(
            f"d=10^7, m=64: optimizer memory (regenerate, the auto mode) = {mem:.2f}·d "
            f"floats (target <= 3): " + _verdict(mem <= 3)
        )
    if cuda:
        for (d, m), r in sorted(rows.items()):
            if d == 10_000_000 and "numpy_s" in r:
                speedup = r["numpy_s"] / r["auto_s"]
                out.append(
                    f"d=10^7, m={m} (wall): numpy (CPU) / ZO-RankSGD ({r['device']}) = "
                    f"{speedup:.0f} (target >= 100): " + _verdict(speedup >= 100)
                )
    return out


# -- command line ---------------------------------------------------------------------------------
def _parser(prog: str) -> argparse.ArgumentParser:
    quick = f"small subset: d in {list(_QUICK_DIMS)}, m in {list(_QUICK_MS)}, 3 repeats (seconds)"
    p = bench_parser(prog, _DESCRIPTION, quick=quick, loop=True, json_out=True)
    p.add_argument("--device", default="cpu", help="torch device of the optimizer (cpu, cuda)")
    dims = f"dimensions (default {' '.join(f'{d:.0e}' for d in _FULL_DIMS)})"
    p.add_argument("--dims", type=positive_int, nargs="+", metavar="D", help=dims)
    ms = f"candidates per round (default {' '.join(map(str, _FULL_MS))})"
    p.add_argument("--ms", type=positive_int, nargs="+", metavar="M", help=ms)
    repeats = "timed rounds per measurement, after one warm-up (default 5; 3 with --quick)"
    p.add_argument("--repeats", type=positive_int, default=None, help=repeats)
    p.add_argument("--no-numpy", action="store_true", help="skip the numpy reference")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "labkit bench speed") -> int:
    """Entry point of ``labkit bench speed ARGS...``; returns the exit status."""
    args = parse_args(_parser(prog), argv)
    dims = args.dims or (_QUICK_DIMS if args.quick else _FULL_DIMS)
    ms = args.ms or (_QUICK_MS if args.quick else _FULL_MS)
    repeats = args.repeats or (3 if args.quick else 5)
    for m in ms:
        if m < 2:
            print(f"{prog}: error: m must be >= 2; got {m}", file=sys.stderr)
            return 2
    try:
        resolve_device(args.device, name="--device")
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        result = run_speed(
            dims=dims,
            ms=ms,
            repeats=repeats,
            device=args.device,
            numpy_ref=not args.no_numpy,
            progress=args.progress,
        )
    finally:  # main may run inside a test session or a notebook
        torch.set_num_threads(threads_before)
    machine = result["machine"]
    print(
        f"# labkit bench speed: {machine['processor']}, {machine['cpu_count']} CPUs, "
        f"torch {machine['torch']} ({machine['torch_threads']} threads), device {args.device}, "
        f"load {machine['load_average']}"
    )
    print(markdown_table(result))
    for line in target_lines(result):
        print(line)
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
