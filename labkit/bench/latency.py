"""``labkit bench latency``: from a click on "Submit ranking" to the next round on screen.

What a person waits for between two rounds, measured in a real browser against a real server:

1. a generated one-cell notebook builds a :class:`labkit.Session` with a trivial task (each of
   the ``m`` candidates is a solid ``size × size`` PNG whose colour comes from the candidate, so
   rendering costs next to nothing) and shows ``session.show()``: the ranking widget and, unless
   ``--no-plot``, the live progress plot, exactly as an app does;
2. Voilà serves it on 127.0.0.1 (a free port, a temporary round log through ``LABKIT_DB``);
3. Debian's chromium (Playwright) opens the app; for each round, code *in the page* records
   ``performance.now()``, clicks "Submit ranking", and watches the widget with a
   ``MutationObserver`` until the title shows the next round id and the Submit button is enabled
   again (the new tiles are in the DOM: *DOM ready*); it then waits until every new image is
   decoded and two animation frames have begun, so the frame showing them was painted
   (*painted*, what the person sees).

The figure is the median over ``--rounds`` rounds (after ``--warmup`` untimed ones) of *painted*,
with its 90th percentile. For the breakdown, the kernel records when it started and finished
handling each submission, in wall-clock time, which the page's ``performance.timeOrigin +
performance.now()`` shares on one machine: when the widget's state update arrived, when the next
round had been sent (validation, the SQLite append, ``tell``, rendering and ``show_round``) and
when the handler returned (the session sends the plot's update *after* the next round, so the
person's round does not queue behind it). So each round splits into *inbound* (click → the kernel
starts: the page's message, the websocket, the server's relay, the kernel's queue), *kernel*
(start → next round sent), *outbound* (next round sent → in the DOM: the way back and the front
end's handling of every message of the burst, the plot's included) and *front end* (image decode +
paint); *after* (next round sent → handler returned: the plot update) overlaps *outbound*. The
page also sums its main thread's long tasks (> 50 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from labkit.bench._common import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    descendants,
    parse_args,
    positive_int,
    write_json,
)

__all__ = ["main", "run_latency"]

_TARGET_S = 0.5  # the goal: half a second from click to the next round, median
_START_TIMEOUT_S = 180.0  # server start + kernel start + the cell (2 slow cores)


# -- the kernel side (runs inside the Voilà kernel) -----------------------------------------------
class _SolidTask:
    """A trivial task: candidate ``x`` (shape ``(d,)``) becomes a solid square PNG.

    The colour is ``sigmoid(x[:3])`` scaled to 0..255, so different candidates look different;
    ``score`` is ``Σ x²`` (lower is better), so the progress plot has something to show.
    """

    maximize = False
    mime = "image/png"

    def __init__(self, size: int) -> None:
        self.size = size

    def render(self, X: torch.Tensor) -> list[bytes]:
        """One ``size × size`` PNG per row of the ``m × d`` CPU tensor ``X`` (d >= 3)."""
        from PIL import Image

        rgb = (torch.sigmoid(X[:, :3].double()) * 255).round().to(torch.uint8).tolist()
        out = []
        for colour in rgb:
            buf = io.BytesIO()
            Image.new("RGB", (self.size, self.size), tuple(colour)).save(buf, format="PNG")
            out.append(buf.getvalue())
        return out

    def score(self, X: torch.Tensor) -> torch.Tensor:
        """``Σ x²`` of each row of the ``m × d`` tensor ``X``: an ``(m,)`` tensor."""
        return (X * X).sum(dim=1)


def _app(*, m: int, size: int, plot: bool, timings: str) -> Any:
    """The benchmark's app (called by the generated notebook): ``session.show()`` of a session.

    For each submission, ``[start, sent, end]`` of its handling in the kernel (epoch seconds, the
    clock the page's ``performance.timeOrigin + performance.now()`` also reads: the state update
    arrives, the next round has been sent, the handler returns) is appended to the JSON list in
    the file ``timings``.
    """
    from labkit.optim.zo_ranksgd import ZORankSGD
    from labkit.session import Session

    opt = ZORankSGD(torch.zeros(3), lr=0.1, mu=0.5, m=m, seed=0)
    session = Session(opt, task=_SolidTask(size), name="bench-latency", rater="bench")
    box = session.show(plot=plot, size=size, columns=4)
    widget = session._widget
    handle = widget.set_state  # every state update from the page goes through set_state
    present = session._present  # sends a round to the widget (and marks it ready)
    spent: list[list[float]] = []
    sent: list[float] = []

    def timed_present() -> None:
        present()
        sent.append(time.perf_counter())

    def timed_set_state(sync_data: dict[str, Any]) -> None:
        # The start in wall-clock epoch seconds, comparable with the page's clock (same
        # machine); the durations from a monotonic clock, which no clock adjustment can step.
        epoch, t0 = time.time(), time.perf_counter()
        sent.clear()
        handle(sync_data)
        if "submitted" in sync_data:  # a submission: the next round was sent before this returns
            if not sent:
                raise RuntimeError("a submission was handled without presenting a next round")
            end = time.perf_counter()
            spent.append([epoch, epoch + (sent[0] - t0), epoch + (end - t0)])
            Path(timings).write_text(json.dumps(spent))

    session._present = timed_present  # type: ignore[method-assign]
    widget.set_state = timed_set_state
    return box


def _notebook(*, m: int, size: int, plot: bool, timings: Path) -> dict[str, Any]:
    """The one-cell notebook (nbformat 4, as a dict) that Voilà serves."""
    source = (
        "from labkit.bench.latency import _app\n"
        f"_app(m={m}, size={size}, plot={plot}, timings={str(timings)!r})"
    )
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "latency-app",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# -- the server -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _voila(notebook: Path, *, env: dict[str, str], log: Path) -> Iterator[str]:
    """Voilà on 127.0.0.1 serving ``notebook``; yields its URL; always stopped (group + kernels)."""
    port = _free_port()
    voila = Path(sys.executable).with_name("voila")
    argv = [
        str(voila) if voila.exists() else "voila",
        str(notebook),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={port}",
        "--Voila.port_retries=0",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=notebook.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + _START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"voila exited with {proc.returncode}; see {log}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=1.0),
                ):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"voila did not listen on port {port}; see {log}")
                time.sleep(0.25)
            yield f"http://127.0.0.1:{port}/"
        finally:
            below = descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            for pid in below:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


# -- the page side --------------------------------------------------------------------------------
# Runs in the page: click Submit, then time the next round's arrival. Resolves with {dom,
# painted, blocked} in milliseconds: since the click, and the main thread's long tasks meanwhile.
_ROUND_JS = """
async (timeoutMs) => {
  const root = document.querySelector(".lk-ranker");
  const title = root.querySelector(".lk-title");
  const buttons = [...root.querySelectorAll("button")];
  const submit = buttons.find((b) => b.textContent === "Submit ranking");
  const before = title.textContent;
  const ready = () => title.textContent !== before && !submit.disabled;
  let t0 = 0;
  // Main-thread tasks over 50 ms while the page waits: front-end work that delays the round.
  const long = [];
  const longObserver = new PerformanceObserver((list) => long.push(...list.getEntries()));
  longObserver.observe({ type: "longtask" });
  const dom = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      observer.disconnect();
      reject(new Error("timeout"));
    }, timeoutMs);
    const observer = new MutationObserver(() => {
      if (!ready()) return;
      const t = performance.now();
      observer.disconnect();
      clearTimeout(timer);
      resolve(t - t0);
    });
    const what = { subtree: true, childList: true, characterData: true, attributes: true };
    observer.observe(root, what);
    t0 = performance.now();
    submit.click();
  });
  const images = [...root.querySelectorAll(".lk-list img")];
  await Promise.all(images.map((img) => img.decode().catch(() => null)));
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const painted = performance.now() - t0;
  longObserver.takeRecords().forEach((entry) => long.push(entry));
  longObserver.disconnect();
  const blocked = long
    .filter((e) => e.startTime >= t0 && e.startTime < t0 + painted)
    .reduce((sum, e) => sum + e.duration, 0);
  const click = (performance.timeOrigin + t0) / 1000;
  return { dom, painted, blocked, click, tiles: images.length };
}
"""


def _quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation between order statistics (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def run_latency(
    *,
    rounds: int = 20,
    warmup: int = 3,
    m: int = 8,
    size: int = 64,
    plot: bool = True,
    pause: float = 0.3,
) -> dict[str, Any]:
    """Measure ``rounds`` submit-to-next-round latencies (seconds) in chromium against Voilà.

    ``pause`` seconds pass between a round appearing and the next click (a person never clicks
    faster), so the kernel's after-round work does not pile up. Returns a dict with the per-round
    figures and their medians / 90th percentiles (see the module docstring for their meaning).
    """
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"this benchmark needs Debian's chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="labkit-latency-") as tmp:
        work = Path(tmp)
        timings = work / "kernel_timings.json"
        notebook = work / "latency.ipynb"
        notebook.write_text(
            json.dumps(_notebook(m=m, size=size, plot=plot, timings=timings), indent=1)
        )
        env = dict(os.environ)
        for name in ("HOME", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
            (work / name.lower()).mkdir()
            env[name] = str(work / name.lower())
        env["LABKIT_DB"] = str(work / "rounds.sqlite")
        repo = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)

        page_ms: list[dict[str, float]] = []
        with _voila(notebook, env=env, log=work / "voila.log") as url, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS), headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(url, timeout=_START_TIMEOUT_S * 1000)
                page.get_by_role("list", name="Candidates").wait_for(
                    timeout=_START_TIMEOUT_S * 1000
                )
                page.get_by_role("button", name="Submit ranking").wait_for(state="visible")
                for _ in range(warmup + rounds):
                    time.sleep(pause)
                    result = page.evaluate(_ROUND_JS, 30_000)
                    if result["tiles"] != m:
                        raise RuntimeError(f"expected {m} tiles, the page shows {result['tiles']}")
                    page_ms.append(result)
            finally:
                browser.close()
        kernel_s = json.loads(timings.read_text())

    if len(kernel_s) != warmup + rounds:
        raise RuntimeError(
            f"the kernel handled {len(kernel_s)} submissions; the page made {warmup + rounds}"
        )
    timed = page_ms[warmup:]
    painted = [r["painted"] / 1000 for r in timed]
    dom = [r["dom"] / 1000 for r in timed]
    spans = kernel_s[warmup:]
    kernel = [sent - start for start, sent, _ in spans]
    after = [end - sent for _, sent, end in spans]
    clicks = [r["click"] for r in timed]
    # Click -> the kernel starts handling (page, websocket, server, zmq, kernel queue) and
    # the next round sent -> in the DOM (the way back plus the front end's handling).
    inbound = [start - c for (start, _, _), c in zip(spans, clicks, strict=True)]
    outbound = [c + d - sent for (_, sent, _), c, d in zip(spans, clicks, dom, strict=True)]
    front = [p_ - d for p_, d in zip(painted, dom, strict=True)]
    blocked = [r["blocked"] / 1000 for r in timed]

    def summary(xs: list[float]) -> dict[str, float]:
        return {"median": statistics.median(xs), "p90": _quantile(xs, 0.9)}

    return {
        "config": {
            "rounds": rounds,
            "warmup": warmup,
            "m": m,
            "size": size,
            "plot": plot,
            "pause": pause,
            "server": "voila",
        },
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "painted": summary(painted),
        "dom": summary(dom),
        "kernel": summary(kernel),
        "after": summary(after),
        "inbound": summary(inbound),
        "outbound": summary(outbound),
        "front_end": summary(front),
        "blocked": summary(blocked),
        "per_round": {
            "painted": painted,
            "dom": dom,
            "kernel": kernel,
            "after": after,
            "inbound": inbound,
            "outbound": outbound,
            "blocked": blocked,
        },
        "target_s": _TARGET_S,
    }


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Time from a click on 'Submit ranking' to the next round painted in "
        "chromium, through a real Voilà server on 127.0.0.1.",
    )
    p.add_argument("--rounds", type=positive_int, default=20, help="timed rounds (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    p.add_argument("--m", type=positive_int, default=8, help="candidates per round (default 8)")
    p.add_argument(
        "--size", type=positive_int, default=64, help="tile and PNG side, px (default 64)"
    )
    p.add_argument("--no-plot", action="store_true", help="show the widget without the live plot")
    p.add_argument(
        "--pause", type=float, default=0.3, help="seconds between a round and the next click"
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write all figures to this JSON file")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "labkit bench latency") -> int:
    """Entry point of ``labkit bench latency ARGS...``; returns the exit status."""
    args = parse_args(_parser(prog), argv)
    if args.m < 2:
        print(
            f"{prog}: error: m must be >= 2 (the optimizer ranks m candidates); got {args.m}",
            file=sys.stderr,
        )
        return 2
    if args.warmup < 0 or args.pause < 0:
        print(f"{prog}: error: --warmup and --pause must be >= 0", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"{prog}: error: needs Debian's chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    result = run_latency(
        rounds=args.rounds,
        warmup=args.warmup,
        m=args.m,
        size=args.size,
        plot=not args.no_plot,
        pause=args.pause,
    )
    mc = result["machine"]
    print(
        f"# labkit bench latency: {mc['processor']}, {mc['cpu_count']} CPUs, Python "
        f"{mc['python']}, load {mc['load_average']}; m={args.m}, {args.size}x{args.size} px, "
        f"plot {'off' if args.no_plot else 'on'}, {args.rounds} rounds after {args.warmup}"
    )
    print("| stage | median (ms) | p90 (ms) |")
    print("|---|---:|---:|")
    for key, label in [
        ("painted", "click → next round painted (**the figure**)"),
        ("dom", "click → next round in the DOM"),
        ("inbound", "click → kernel starts handling it"),
        ("kernel", "kernel: submission → next round sent"),
        ("outbound", "next round sent → in the DOM"),
        ("after", "kernel after sending it (plot update; overlaps the above)"),
        ("front_end", "front end: image decode + paint"),
        ("blocked", "page main thread in long tasks (> 50 ms), click → painted"),
    ]:
        s = result[key]
        print(f"| {label} | {1000 * s['median']:.0f} | {1000 * s['p90']:.0f} |")
    verdict = "meets" if result["painted"]["median"] <= _TARGET_S else "MISSES"
    print(
        f"median {1000 * result['painted']['median']:.0f} ms {verdict} the target of "
        f"{1000 * _TARGET_S:.0f} ms"
    )
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
