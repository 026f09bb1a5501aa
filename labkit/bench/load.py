"""``labkit bench load``: many visitors ranking in one ``labkit app`` at once, on loopback.

What a published app meets when a class opens it together, measured end to end:

1. ``labkit app APP --no-browser`` starts on a free port of 127.0.0.1 with a fresh round log,
   ``--max-kernels``, ``--cull-after`` and ``--pool-size`` as given; the benchmark reads the
   tokened link the command prints (:func:`labkit.app.printed_link`).
2. One Debian chromium (Playwright, async API) opens ``--visitors`` pages at once, each in a
   browser context of its own (cookies included), as that many people would.
3. Every visitor ranks ``--rounds`` rounds with the keyboard (two labels, then Enter: the widget's
   keyboard contract), each visitor and round pressing different labels, and keeps the full
   ranking its page showed when it pressed Enter.
4. Meanwhile the memory of the server's whole process tree (``labkit app``, the Voilà server and
   every kernel) is sampled twice a second (psutil): the sum of RSS (shared pages counted
   in each process: an upper bound) and of PSS (shared pages split: what the tree really holds).
5. The round log is checked: exactly one session per visitor with rounds in it, each with
   ``--rounds`` rounds numbered from 0, and each session's sequence of rankings is exactly one
   visitor's (none lost, none mixed into another's session).
6. All pages close (their websockets drop); the benchmark waits until the server holds no
   visitor's kernel (``labkit/status``) and reports how long the culling took.

Exit status 0 when every check held (and the peak RSS sum stayed under ``--max-rss-mib`` when
given), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.app import server_status
from labkit.bench._common import (
    TreeMemory,
    bench_parser,
    machine,
    parse_args,
    positive_int,
    write_json,
)
from labkit.bench._server import VoilaLimits, chromium_missing, labkit_app, launch_chromium

#: Seconds a page may take to show its first round (a kernel starting on a loaded 2-core machine).
PAGE_READY_S = 300.0
#: Seconds one round may take, click to the next round on screen.
ROUND_S = 120.0


# ---- the visitors ------------------------------------------------------------------------------


@dataclass
class Visit:
    """What one visitor did: the rankings submitted, in order, and the time each round took."""

    index: int
    ready_s: float = 0.0
    rankings: list[tuple[int, ...]] = field(default_factory=list)
    round_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _round_on_screen(page: Any, round_id: int, timeout_s: float) -> None:
    title = page.locator(".lk-ranker .lk-title", has_text=f"Round {round_id}").first
    await title.wait_for(state="visible", timeout=timeout_s * 1000)
    submit = page.get_by_role("button", name="Submit ranking").first
    deadline = time.monotonic() + timeout_s
    while not await submit.is_enabled():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Submit stayed disabled in round {round_id}")
        await asyncio.sleep(0.05)


async def _dom_order(page: Any) -> list[int]:
    tiles = page.get_by_role("list", name="Candidates").first.get_by_role("listitem")
    order = await tiles.evaluate_all("nodes => nodes.map(n => Number(n.dataset.candidate))")
    return [int(c) for c in order]


async def _visit(
    browser: Any, link: str, visit: Visit, rounds: int, start: float, shots: Path
) -> None:
    context = await browser.new_context(viewport={"width": 1200, "height": 1000})
    page = await context.new_page()
    try:
        page.on("pageerror", lambda exc: visit.errors.append(str(exc)))
        await page.goto(link, timeout=PAGE_READY_S * 1000)
        await _round_on_screen(page, 0, PAGE_READY_S)
        visit.ready_s = time.monotonic() - start
        for r in range(rounds):
            m = len(await _dom_order(page))
            # Two labels (1-based), different for each visitor and round, then Enter.
            first = (visit.index + r) % m + 1
            second = (visit.index + 2 * r + 1) % m + 1
            if second == first:
                second = first % m + 1
            root = page.locator(".lk-ranker").first
            await root.focus()
            await page.keyboard.press(str(first))
            await page.keyboard.press(str(second))
            visit.rankings.append(tuple(await _dom_order(page)))
            t0 = time.monotonic()
            await page.keyboard.press("Enter")
            await _round_on_screen(page, r + 1, ROUND_S)
            visit.round_s.append(time.monotonic() - t0)
    except Exception:
        with contextlib.suppress(Exception):
            await page.screenshot(path=str(shots / f"visitor-{visit.index}.png"))
        raise
    finally:
        await context.close()  # the page's websocket drops, as when a person closes the tab


async def _visitors(link: str, *, visitors: int, rounds: int, shots: Path) -> list[Visit]:
    from playwright.async_api import async_playwright

    visits = [Visit(i) for i in range(visitors)]
    async with async_playwright() as p:
        browser = await launch_chromium(p.chromium)
        try:
            start = time.monotonic()
            results = await asyncio.gather(
                *(_visit(browser, link, v, rounds, start, shots) for v in visits),
                return_exceptions=True,
            )
        finally:
            await browser.close()
    for visit, result in zip(visits, results, strict=True):
        if isinstance(result, BaseException):
            visit.errors.append(f"{type(result).__name__}: {result}")
    return visits


# ---- the checks --------------------------------------------------------------------------------


def check_log(db: Path, visits: Sequence[Visit], rounds: int) -> tuple[list[str], int]:
    """What is wrong with the round log at ``db`` after ``visits`` (empty: nothing), and how
    many rounds it holds.

    One session with rounds per visitor, ``rounds`` rounds each, numbered 0..rounds-1, and each
    session's rankings exactly one visitor's: none lost, none in another visitor's session.
    """
    from labkit.roundlog import RoundLog

    problems: list[str] = []
    with RoundLog(db) as log:
        sessions = {
            s: [(r.round, tuple(r.ranking)) for r in log.rounds(s, with_candidates=False)]
            for s in log.sessions()
        }
    ranked = {s: rows for s, rows in sessions.items() if rows}
    if len(ranked) != len(visits):
        problems.append(f"{len(ranked)} sessions with rounds for {len(visits)} visitors")
    unmatched = [list(v.rankings) for v in visits]

    def same(logged: list[tuple[int, ...]], shown: list[tuple[int, ...]]) -> bool:
        # A visitor records the whole order on the page; a top-k round (a line-search round
        # asks for the best 1) logs its first k.
        return len(logged) == len(shown) and all(
            0 < len(a) and a == b[: len(a)] for a, b in zip(logged, shown, strict=True)
        )

    for s, rows in ranked.items():
        if [r for r, _ in rows] != list(range(rounds)):
            problems.append(f"session {s}: rounds {[r for r, _ in rows]}, not 0..{rounds - 1}")
        seq = [ranking for _, ranking in rows]
        match = next((u for u in unmatched if same(seq, u)), None)
        if match is not None:
            unmatched.remove(match)
        else:
            problems.append(f"session {s}: its rankings are no visitor's: {seq}")
    if unmatched:
        problems.append(f"{len(unmatched)} visitors' rankings are in no session of their own")
    return problems, sum(len(rows) for rows in ranked.values())


def _wait_culled(link: str, timeout_s: float) -> float | None:
    """Seconds until the server holds no visitor's kernel, or None after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        with contextlib.suppress(OSError, ValueError):
            if server_status(link)["visitors"] == 0:
                return time.monotonic() - start
        time.sleep(0.5)
    return None


def run_load(
    *,
    app: str = "quickstart",
    visitors: int = 10,
    rounds: int = 5,
    limits: VoilaLimits | None = None,
    work: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark; the figures and the checks' findings, as a dict.

    ``limits``: the server's kernel limits (default: at most 10 kernels, culled after 60 s idle,
    one warm spare).
    """
    if limits is None:
        limits = VoilaLimits(max_kernels=10, cull_after=60, pool_size=1)
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labkit-load-")))
        db, log = work / "rounds.sqlite", work / "server.log"
        server = stack.enter_context(
            labkit_app(app, db=db, log=log, limits=limits, start_timeout_s=PAGE_READY_S)
        )
        link = server.link
        memory = TreeMemory(server.pid)
        idle_rss, idle_pss, _ = memory.sample()
        memory.start()
        t0 = time.monotonic()
        try:
            visits = asyncio.run(_visitors(link, visitors=visitors, rounds=rounds, shots=work))
        finally:
            memory.stop()
        elapsed = time.monotonic() - t0
        culled_s = _wait_culled(link, timeout_s=limits.cull_after + 120)
        problems = [f"visitor {v.index}: {e}" for v in visits for e in v.errors]
        log_problems, logged = check_log(db, visits, rounds)
        problems += log_problems
        if culled_s is None:
            problems.append("the visitors' kernels were not culled after the pages closed")
        round_s = [t for v in visits for t in v.round_s]
        ready_s = [v.ready_s for v in visits if v.ready_s]
        p90 = statistics.quantiles(round_s, n=10)[8] if len(round_s) >= 2 else float("nan")
        return {
            "app": app,
            "visitors": visitors,
            "rounds": rounds,
            "max_kernels": limits.max_kernels,
            "cull_after_s": limits.cull_after,
            "pool_size": limits.pool_size,
            "elapsed_s": elapsed,
            "page_ready_s": {"median": _median(ready_s), "max": max(ready_s, default=0.0)},
            "round_s": {"median": _median(round_s), "p90": p90},
            "submitted": sum(len(v.rankings) for v in visits),
            "logged": logged,
            "idle_rss_mib": idle_rss / 1024,
            "idle_pss_mib": idle_pss / 1024,
            "peak_rss_mib": memory.peak_rss_kib / 1024,
            "peak_pss_mib": memory.peak_pss_kib / 1024,
            "peak_kernels": memory.peak_kernels,
            "culled_after_close_s": culled_s,
            "problems": problems,
            "machine": machine(),
        }
    raise AssertionError("unreachable")  # for mypy: the with block returns


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


#: What ``--help`` says the benchmark does.
_DESCRIPTION = (
    "Many visitors in one `labkit app` at once, in chromium on 127.0.0.1: "
    "rankings kept apart and none lost, the server's memory, kernels culled after."
)


def _parser(prog: str) -> argparse.ArgumentParser:
    p = bench_parser(prog, _DESCRIPTION, json_out=True)
    p.add_argument("--app", default="quickstart", help="the app (default quickstart)")
    p.add_argument("--visitors", type=positive_int, default=10, help="pages at once (default 10)")
    p.add_argument("--rounds", type=positive_int, default=5, help="rounds each (default 5)")
    p.add_argument(
        "--max-kernels", type=positive_int, default=10, help="labkit app --max-kernels (10)"
    )
    p.add_argument(
        "--cull-after", type=positive_int, default=60, help="labkit app --cull-after (60 s)"
    )
    p.add_argument("--pool-size", type=int, default=1, help="labkit app --pool-size (1)")
    p.add_argument(
        "--max-rss-mib", type=float, default=None, help="fail if the peak RSS sum exceeds this"
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "labkit bench load") -> int:
    """Entry point of ``labkit bench load ARGS...``; returns the exit status."""
    args = parse_args(_parser(prog), argv)
    if chromium_missing(prog):
        return 2
    if args.pool_size < 0:
        print(f"{prog}: error: --pool-size must be >= 0", file=sys.stderr)
        return 2
    limits = VoilaLimits(args.max_kernels, args.cull_after, args.pool_size)
    r = run_load(app=args.app, visitors=args.visitors, rounds=args.rounds, limits=limits)
    if args.max_rss_mib is not None and r["peak_rss_mib"] > args.max_rss_mib:
        r["problems"].append(
            f"peak RSS sum {r['peak_rss_mib']:.0f} MiB > --max-rss-mib {args.max_rss_mib:.0f}"
        )
    mc = r["machine"]
    print(
        f"# labkit bench load: {mc['processor']}, {mc['cpu_count']} CPUs, Python {mc['python']}, "
        f"load {mc['load_average']}; app {r['app']}, {r['visitors']} visitors x {r['rounds']} "
        f"rounds, --max-kernels {r['max_kernels']} --cull-after {r['cull_after_s']} "
        f"--pool-size {r['pool_size']}"
    )
    print("| figure | value |")
    print("|---|---:|")
    for label, value in [
        ("all visitors done (s)", f"{r['elapsed_s']:.0f}"),
        ("page open → round 0 on screen, median / max (s)", _pair(r["page_ready_s"], "max")),
        ("Enter → next round on screen, median / p90 (s)", _pair(r["round_s"], "p90")),
        ("server tree idle, before visitors: RSS sum / PSS sum (MiB)", _mib(r, "idle")),
        ("server tree peak: RSS sum / PSS sum (MiB)", _mib(r, "peak")),
        ("kernels at the peak", f"{r['peak_kernels']}"),
        ("pages closed → visitors' kernels culled (s)", _maybe(r["culled_after_close_s"])),
        ("rankings logged / submitted", f"{r['logged']} / {r['submitted']}"),
    ]:
        print(f"| {label} | {value} |")
    for problem in r["problems"]:
        print(f"PROBLEM: {problem}")
    print("every check held" if not r["problems"] else f"{len(r['problems'])} problems")
    if args.json is not None:
        write_json(args.json, r)
    return 0 if not r["problems"] else 1


def _pair(stats: dict[str, float], second: str) -> str:
    return f"{stats['median']:.1f} / {stats[second]:.1f}"


def _mib(r: dict[str, Any], which: str) -> str:
    return f"{r[which + '_rss_mib']:.0f} / {r[which + '_pss_mib']:.0f}"


def _maybe(x: float | None) -> str:
    return "never" if x is None else f"{x:.0f}"


if __name__ == "__main__":
    sys.exit(main())
