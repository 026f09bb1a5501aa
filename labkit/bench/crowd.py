"""``python -m labkit.bench.crowd``: a crowd of simulated raters on one ``labkit app --crowd``.

What a crowd server meets when a class ranks together, on loopback:

1. ``labkit app APP --crowd --raters N --no-browser`` starts on a free port of 127.0.0.1 with a
   fresh round log (T is ``--round-seconds``, long by default, so every round closes at N);
   the benchmark reads the tokened link the command prints.
2. The server's RSS is read (psutil) before any
   rater, once all ``--raters`` have loaded the page and asked for the round, and at the end.
3. ``--raters`` HTTP clients (threads, each its own rater cookie) do what the page does: long
   poll ``api/round``, fetch the round's candidates, post a ranking (random, of the size the
   round asks for), ``--rounds`` rounds.
4. Measured: RSS per extra rater; the server's model renders (``api/status``: must be one per
   round shown, i.e. rounds + 1 for the round open at the end, never one per rater); the round
   close latency (the last ranking of a round acknowledged, to the first rater seeing the next
   round).
5. Checked in the log: each rater's rows are exactly the rankings the server acknowledged, and
   each consensus row counts all N of them (no ranking lost).

Exit status 0 when every check held, 1 otherwise; ``--out PATH`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from labkit.bench._common import machine, parse_args, positive_int, write_json
from labkit.bench._server import ServerProcess, labkit_server

#: Seconds the server may take to print its link (imports torch, renders the first round).
START_S = 180.0
#: Seconds any one round may take to close once its rankings are in.
ROUND_S = 120.0


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB."""
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def rater_request(
    url: str, *, token: str, rater: str, body: Any = None, timeout: float = 60.0
) -> tuple[int, bytes]:
    """One request of a rater to the crowd server's API, as its page makes it: the token, the
    rater's cookie, and ``body`` (if any) as a JSON POST. Returns the status and the raw reply;
    an HTTP error is a status, not an exception."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"token {token}",
            "Cookie": f"labkit_rater={rater}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


@dataclass
class Rater:
    """One simulated rater: what it submitted (round -> ranking) and when it was acknowledged."""

    name: str
    link: str
    token: str
    rounds: int
    seed: int
    submitted: dict[int, list[int]] = field(default_factory=dict)
    acked_at: dict[int, float] = field(default_factory=dict)
    seen_at: dict[int, float] = field(default_factory=dict)  # round -> first seen
    errors: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)

    def _request(self, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, bytes]:
        base = self.link.partition("?token=")[0]
        return rater_request(
            base + path, token=self.token, rater=self.name, body=body, timeout=timeout
        )

    def run(self, go: threading.Event) -> None:
        rng = random.Random(self.seed)
        try:
            status, _ = self._request("")  # the page, as a browser loads it
            if status != 200:
                raise RuntimeError(f"the page answered {status}")
            state = json.loads(self._request("api/round")[1])
            self.connected.set()
            go.wait()
            version = ""
            while len(self.submitted) < self.rounds:
                status, data = self._request(f"api/round?since={version}")
                if status != 200:
                    raise RuntimeError(f"api/round answered {status}")
                state = json.loads(data)
                version = str(state["version"])
                rnd = int(state["round"])
                self.seen_at.setdefault(rnd, time.monotonic())
                if rnd in self.submitted or state["you_ranked"] or rnd >= self.rounds:
                    continue
                for i in range(state["m"]):  # the candidates, as the page fetches them
                    status, _ = self._request(f"api/item/{rnd}/{i}")
                    if status != 200:
                        break  # the round moved on meanwhile
                order = list(range(state["m"]))
                rng.shuffle(order)
                ranking = order[: state["k"] or state["m"]]
                status, data = self._request("api/submit", {"round": rnd, "ranking": ranking})
                if status != 200 or json.loads(data).get("late"):
                    raise RuntimeError(f"round {rnd}: submit answered {status} {data[:200]!r}")
                self.submitted[rnd] = ranking
                self.acked_at[rnd] = time.monotonic()
            # Look on until the round after the last one opens: the first answer may still show
            # the last round (its vote count changed), so one look is not enough to time it.
            deadline = time.monotonic() + 60
            while int(state["round"]) < self.rounds and time.monotonic() < deadline:
                state = json.loads(self._request(f"api/round?since={version}")[1])
                version = str(state["version"])
                self.seen_at.setdefault(int(state["round"]), time.monotonic())
        except Exception as exc:  # reported, and fails the run
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.connected.set()


def crowd_app(
    app: str, *, raters: int, round_seconds: float, db: Path, log: Path
) -> contextlib.AbstractContextManager[ServerProcess]:
    """``labkit app APP --crowd`` on a free port, up once it printed its link (``server.link``);
    always stopped."""
    args = [app, "--crowd", f"--raters={raters}", f"--round-seconds={round_seconds}"]
    return labkit_server([*args, f"--db={db}"], log=log, start_timeout_s=START_S)


def run_crowd(
    *, app: str = "quickstart", raters: int = 30, rounds: int = 10, round_seconds: float = 600.0
) -> dict[str, Any]:
    """Run the benchmark; return its figures and the problems found (empty: all held)."""
    from labkit.roundlog import RoundLog

    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="labkit-bench-crowd-") as tmp:
        db = Path(tmp) / "rounds.sqlite"
        with crowd_app(
            app, raters=raters, round_seconds=round_seconds, db=db, log=Path(tmp) / "server.log"
        ) as server:
            proc, link = server.proc, server.link
            token = link.partition("?token=")[2]
            rss_idle = rss_mib(proc.pid)
            go = threading.Event()
            people = [Rater(f"bench-{i:02d}", link, token, rounds, seed=i) for i in range(raters)]
            threads = [threading.Thread(target=p.run, args=(go,), daemon=True) for p in people]
            for t in threads:
                t.start()
            for p in people:
                p.connected.wait(timeout=START_S)
            time.sleep(0.5)
            rss_connected = rss_mib(proc.pid)
            start = time.monotonic()
            go.set()
            for t in threads:
                t.join(timeout=ROUND_S * (rounds + 1))
            wall_s = time.monotonic() - start
            rss_end = rss_mib(proc.pid)
            status = json.loads(people[0]._request("api/status")[1])
        for p in people:
            problems += [f"{p.name}: {e}" for e in p.errors]
            if len(p.submitted) != rounds:
                problems.append(f"{p.name} ranked {len(p.submitted)} of {rounds} rounds")
        # The log: every acknowledged ranking, under its rater, counted in its round.
        with RoundLog(db) as log:
            (crowd,) = [s for s in log.sessions() if "crowd_config" in log.session_meta(s)]
            consensus = log.rounds(crowd, with_candidates=False)
            logged: dict[str, dict[int, list[int]]] = {}
            for s in log.sessions():
                meta = log.session_meta(s)
                if meta.get("crowd") == crowd:
                    rows = log.rounds(s, with_candidates=False)
                    logged[meta["rater"]] = {r.round: list(r.ranking) for r in rows}
        lost = 0
        for p in people:
            for rnd, ranking in p.submitted.items():
                if logged.get(p.name, {}).get(rnd) != ranking:
                    lost += 1
        counted = [len(r.meta["crowd"]["votes"]) for r in consensus]
        if lost:
            problems.append(f"{lost} acknowledged rankings are not in the log as sent")
        if counted != [raters] * rounds:
            problems.append(f"votes counted per round {counted}, expected {raters} in each")
        shown = status["round"] + 1
        if status["renders"] != shown:
            problems.append(f"{status['renders']} model renders for {shown} rounds shown")
        latencies = []
        for rnd in range(rounds):
            acks = [p.acked_at[rnd] for p in people if rnd in p.acked_at]
            seen = [p.seen_at[rnd + 1] for p in people if rnd + 1 in p.seen_at]
            if acks and seen:
                latencies.append(min(seen) - max(acks))
    per_rater = (rss_connected - rss_idle) / raters
    if per_rater > 50:
        problems.append(f"{per_rater:.1f} MiB per extra rater > 50 MiB")
    return {
        "app": app,
        "raters": raters,
        "rounds": rounds,
        "machine": machine(),
        "rss_idle_mib": rss_idle,
        "rss_connected_mib": rss_connected,
        "rss_end_mib": rss_end,
        "rss_per_rater_mib": per_rater,
        "rss_growth_per_rater_end_mib": (rss_end - rss_idle) / raters,
        "renders": status["renders"],
        "rounds_shown": shown,
        "rankings_lost": lost,
        "close_latency_s": latencies,
        "close_latency_median_s": statistics.median(latencies) if latencies else None,
        "close_latency_max_s": max(latencies) if latencies else None,
        "wall_s": wall_s,
        "problems": problems,
    }


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default="quickstart", choices=("quickstart", "digits"))
    parser.add_argument("--raters", type=positive_int, default=30, help="raters (default 30)")
    parser.add_argument("--rounds", type=positive_int, default=10, help="rounds (default 10)")
    parser.add_argument(
        "--round-seconds", type=float, default=600.0, help="T of the crowd (default 600)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m labkit.bench.crowd") -> int:
    """Entry point; returns the exit status."""
    args = parse_args(_parser(prog), argv)
    r = run_crowd(
        app=args.app, raters=args.raters, rounds=args.rounds, round_seconds=args.round_seconds
    )
    mc = r["machine"]
    print(
        f"# {prog}: {mc['processor']}, {mc['cpu_count']} CPUs, Python {mc['python']}, load "
        f"{mc['load_average']}; app {r['app']}, {r['raters']} raters x {r['rounds']} rounds"
    )
    print("| figure | value |")
    print("|---|---:|")
    med, worst = r["close_latency_median_s"], r["close_latency_max_s"]
    for label, value in [
        ("server RSS before any rater", f"{r['rss_idle_mib']:.1f} MiB"),
        (f"server RSS with {r['raters']} raters connected", f"{r['rss_connected_mib']:.1f} MiB"),
        ("server RSS at the end", f"{r['rss_end_mib']:.1f} MiB"),
        ("RSS per extra rater (connected)", f"{r['rss_per_rater_mib']:.2f} MiB"),
        ("RSS growth per rater (end)", f"{r['rss_growth_per_rater_end_mib']:.2f} MiB"),
        ("model renders / rounds shown", f"{r['renders']} / {r['rounds_shown']}"),
        ("rankings lost", str(r["rankings_lost"])),
        ("round close latency, median", "-" if med is None else f"{med * 1000:.0f} ms"),
        ("round close latency, max", "-" if worst is None else f"{worst * 1000:.0f} ms"),
        ("wall time", f"{r['wall_s']:.1f} s"),
    ]:
        print(f"| {label} | {value} |")
    for problem in r["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    if args.out is not None:
        write_json(args.out, r)
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
