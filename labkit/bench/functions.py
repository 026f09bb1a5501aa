"""``labkit bench functions``: rounds-to-target and final value on standard test functions.

Every method gets the same budget of **function queries** — candidates shown to the judge, which
is what costs a person's time — and is reported both in queries and in rounds. A run starts at the
function's default start ``TestFunction.x0(d, seed)`` (at distance ``R0`` from the optimum in a
random direction) and is scored by the value of the method's *iterate* after each round (its
``x``; never shown, never counted as a query). The target is ``f(x) <= TARGET_FRACTION · f(x0)``.

Problems: sphere, ellipsoid (condition 10⁶), Rosenbrock with an exact judge, and the sphere with a
noisy judge ("sphere-noisy"): Thurstone noise of σ = ``NOISE_SIGMA`` round standard deviations
added to the values before ranking, i.e. the judge sorts ``f_i + σ·sd(f)·Z_i`` — whatever the
scale of the values, neighbours in the ranking get swapped about as often, like a person who
compares candidates relative to how different they look. The value-based ZO-SGD is told those
same noisy values.

Methods and their fixed hyperparameters (``_hyper``; d = dimension, R0 = the function's start
radius, 3 for sphere and ellipsoid, 1.5 for Rosenbrock). Each constant was tuned once on a grid of
powers of two at d = 100 (3 seeds, a budget of 10·d rounds of 8), by one rule: among the values
whose median final f/f(x0) stayed below the target on every problem, the one with the fewest
median queries to the target summed over the problems. They are then fixed for every d, seed and
problem, scaled with d as each method's theory suggests — except ZO-SGD's step, tuned per test
function, because a value-based step is proportional to value differences and must shrink with
the curvature (the rank-based methods are invariant to monotone transformations of f):

* ``ZO-RankSGD m=…, k=…``: Algorithm 1, lr = ``Method.lr``·R0/d, μ = ``RANK_MU``·R0/√d. A ranked
  step has length ≈ lr·(κ + noise·√d) whatever |∇f| is, so a fixed lr stalls at a radius ∝ lr·d;
  lr ∝ R0/d reaches the same relative target in every d. μ must stay below the scale on which the
  ranking follows the gradient (μ√d ≪ R on the sphere).
* ``ZO-RankSGD+LS``: line-search rounds (n = ``LS_STEPS`` steps η·2⁻ⁱ), η = ``Method.lr``·R0/√d —
  the line search shrinks the step for itself, so it may start large.
* ``CMA-ES``: pycma told ranks, its default population 4 + ⌊3 ln d⌋ (10, 17, 24 at d = 10, 100,
  1000), σ₀ = ``CMA_SIGMA``·R0/√d; full covariance up to d = 100, diagonal above.
* ``ZO-SGD (values)``: two-point estimates from m/2 = 4 directions,
  lr = ``ZOSGD_LR[f]``·(m/2)/d (the classical ZO step ∝ h/(L·d)), μ as ZO-RankSGD.
* ``prior resampling``: the incumbent plus fresh samples from the prior the start was drawn from,
  N(x*, R0²/d·I) — generous, since it is centred on the optimum.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from labkit.bench._common import bench_parser, limited_threads, parse_args, positive_int
from labkit.bench._harness import Trace, group_by, progress_bar, step_values, write_traces
from labkit.bench._methods import Method, build, registry
from labkit.judges import NoisyJudge, TopKJudge
from labkit.optim.base import RankOptimizer
from labkit.tasks.functions import TestFunction, get_function

__all__ = [
    "METHODS",
    "PROBLEMS",
    "Method",
    "RunTrace",
    "main",
    "run_functions",
    "summarize",
]

#: What ``--help`` says the benchmark does.
_DESCRIPTION = (
    "Rounds-to-target and final value of ZO-RankSGD, its line-search rounds, CMA-ES told "
    "ranks, value-based ZO-SGD and prior resampling on sphere, ellipsoid, Rosenbrock and "
    "a noisy-judge sphere, at equal budgets of function queries."
)

#: A run reaches its target when f(x) <= TARGET_FRACTION · f(x0).
TARGET_FRACTION = 1e-2
#: Thurstone noise of the noisy judge, in standard deviations of the round's values.
NOISE_SIGMA = 0.5
#: The problems: (name, test function, noisy judge?).
PROBLEMS: dict[str, tuple[str, bool]] = {
    "sphere": ("sphere", False),
    "ellipsoid": ("ellipsoid", False),
    "rosenbrock": ("rosenbrock", False),
    "sphere-noisy": ("sphere", True),
}

# Tuned-but-fixed constants (see the module docstring and docs/benchmarks.md).
#: μ = RANK_MU · R0/√d for every ZO method (0.1 was never better on the tuning grid).
RANK_MU = 0.01
#: Steps of the line-search rounds: η, η/2, η/4, η/8.
LS_STEPS = 4
#: CMA-ES's σ₀ = CMA_SIGMA · R0/√d.
CMA_SIGMA = 0.25
#: ZO-SGD's step constant per test function (∝ 1/L: the sphere's L is 2, the ellipsoid's 2·10⁶).
ZOSGD_LR: dict[str, float] = {"sphere": 0.5, "ellipsoid": 4e-6, "rosenbrock": 1e-3}
PRIOR_M = 8


#: The contenders, by label; ``Method.lr`` is the tuned constant of a ZO-RankSGD step:
#: lr = ``lr``·R0/d for Algorithm 1 and ``lr``·R0/√d for the largest step of line-search rounds.
METHODS: dict[str, Method] = registry(
    Method("ZO-RankSGD m=4", "zorank", m=4, lr=0.25),
    Method("ZO-RankSGD m=8", "zorank", m=8, lr=0.5),
    Method("ZO-RankSGD m=8 k=2", "zorank", m=8, k=2, lr=0.25),
    Method("ZO-RankSGD m=16 k=4", "zorank", m=16, k=4, lr=0.5),
    Method(f"ZO-RankSGD+LS m=8 n={LS_STEPS}", "zorank", m=8, line_search=LS_STEPS, lr=0.25),
    Method("CMA-ES (ranks)", "cmaes", m=None),
    Method("ZO-SGD (values) m=8", "zosgd", m=8),
    Method("prior resampling m=8", "prior", m=PRIOR_M),
)


def _hyper(method: Method, function: TestFunction, d: int) -> dict[str, Any]:
    """The fixed hyperparameters of ``method`` on ``function`` in dimension ``d``."""
    r0 = function.start_radius
    if method.kind == "zorank":
        scale = math.sqrt(d) if method.line_search else d
        return {"lr": method.lr * r0 / scale, "mu": RANK_MU * r0 / math.sqrt(d)}
    if method.kind == "cmaes":
        return {"sigma": CMA_SIGMA * r0 / math.sqrt(d)}
    if method.kind == "zosgd":
        assert method.m is not None
        return {
            "lr": ZOSGD_LR[function.name] * (method.m // 2) / d,
            "mu": RANK_MU * r0 / math.sqrt(d),
        }
    if method.kind == "prior":
        return {"sigma": r0 / math.sqrt(d)}
    raise ValueError(f"unknown method kind {method.kind!r}")


def _build(
    method: Method,
    function: TestFunction,
    d: int,
    x0: torch.Tensor,
    seed: int,
    hyper: dict[str, Any],
) -> RankOptimizer:
    # Prior resampling draws around the optimum: the prior the start was drawn from.
    mean = {"mean": function.optimum(d)} if method.kind == "prior" else {}
    return build(method, x0, seed=seed, **hyper, **mean)


# -- one run --------------------------------------------------------------------------------------
@dataclass
class RunTrace(Trace):
    """One run: the iterate's value after each round, against cumulative queries.

    ``queries[0] == 0`` and ``values[0] == f(x0)``; entry i > 0 is after round i. ``diverged`` marks
    a run stopped early because the iterate or a candidate's value stopped being finite.
    """

    #: One CSV row per run: problem, d, method, seed, queries/rounds to target, final value.
    CSV_FIELDS = (
        "problem",
        "d",
        "method",
        "seed",
        "queries_to_target",
        "rounds_to_target",
        "queries_used",
        "rounds_run",
        "f0",
        "final",
        "final_ratio",
        "diverged",
        "seconds",
    )

    problem: str
    d: int
    method: str
    seed: int
    queries: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    diverged: bool = False

    @property
    def f0(self) -> float:
        return self.values[0]

    @property
    def final(self) -> float:
        return self.values[-1]

    @property
    def rounds(self) -> int:
        return len(self.values) - 1

    def curve(self, grid: Sequence[float]) -> list[float]:
        """f/f0 after the last round that ended at or before each query count of ``grid``
        (ascending): runs whose rounds differ in size, on one grid for a median over seeds."""
        return step_values(self.queries, [v / self.f0 for v in self.values], grid)

    def to_target(self, fraction: float = TARGET_FRACTION) -> tuple[int, int] | None:
        """(queries, rounds) when f first reached ``fraction · f(x0)``; ``None`` if never."""
        target = fraction * self.f0
        for i, v in enumerate(self.values):
            if v <= target:
                return self.queries[i], i
        return None

    def csv_rows(self) -> Iterator[dict[str, Any]]:
        hit = self.to_target()
        yield {
            "problem": self.problem,
            "d": self.d,
            "method": self.method,
            "seed": self.seed,
            "queries_to_target": "" if hit is None else hit[0],
            "rounds_to_target": "" if hit is None else hit[1],
            "queries_used": self.queries[-1],
            "rounds_run": self.rounds,
            "f0": f"{self.f0:.6g}",
            "final": f"{self.final:.6g}",
            "final_ratio": f"{self.final / self.f0:.6g}",
            "diverged": int(self.diverged),
            "seconds": f"{self.seconds:.3f}",
        }


def _standardized(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], Any]:
    """``fn`` divided by the round's standard deviation, so judge noise is relative to it."""

    def values(X: torch.Tensor) -> torch.Tensor:
        v = fn(X).to(torch.float64)
        sd = v.std()
        return v / sd if float(sd) > 0 else v

    return values


def run_one(
    method: Method,
    problem: str,
    d: int,
    seed: int,
    budget: int,
    *,
    hyper: dict[str, Any] | None = None,
) -> RunTrace:
    """Run ``method`` on ``problem`` in dimension ``d`` until ``budget`` queries are spent.

    A round is started only if all its candidates fit in what is left of the budget. ``hyper``
    overrides the fixed hyperparameters (for tuning).
    """
    fname, noisy = PROBLEMS[problem]
    function = get_function(fname)
    f = function.fn
    x0 = function.x0(d, seed)  # float32, on the CPU
    opt = _build(method, function, d, x0, seed, hyper or _hyper(method, function, d))
    # The judge gets its own seed stream, distinct from the optimizer's.
    judge: Callable[[torch.Tensor], Any]
    noise = torch.Generator().manual_seed(10_000 + seed)
    if noisy:
        judge = NoisyJudge(
            _standardized(f), k=method.k, model="thurstone", sigma=NOISE_SIGMA, seed=noise
        )
    else:
        judge = TopKJudge(f, k=method.k)

    trace = RunTrace(problem, d, method.label, seed, [0], [float(f(x0.unsqueeze(0))[0])])
    t0 = time.perf_counter()
    queries = 0
    while True:
        rows = _next_round_size(opt)
        if queries + rows > budget:
            break
        X = opt.ask()
        values = f(X)
        if not bool(torch.isfinite(values).all()):
            trace.diverged = True
            break
        if method.kind == "zosgd":
            if noisy:  # the same Thurstone noise the judges add, on the values themselves
                sd = values.to(torch.float64).std()
                z = torch.randn(values.shape[0], generator=noise, dtype=torch.float64)
                values = values.to(torch.float64) + NOISE_SIGMA * sd * z
            opt.tell_values(values)  # type: ignore[attr-defined]
        else:
            opt.tell(judge(X))
        queries += X.shape[0]
        v = float(f(opt.x.reshape(1, -1))[0])
        trace.queries.append(queries)
        trace.values.append(v)
        if not math.isfinite(v):
            trace.diverged = True
            break
    trace.seconds = time.perf_counter() - t0
    return trace


def _next_round_size(opt: RankOptimizer) -> int:
    """Rows of the next ``ask()``, known before asking (line-search rounds show n + 2)."""
    if opt.round_kind == "line_search":
        return int(opt.line_search) + 2  # type: ignore[attr-defined]
    return int(opt.m)  # type: ignore[attr-defined]


# -- the whole benchmark --------------------------------------------------------------------------
def run_functions(
    *,
    problems: Sequence[str],
    dims: Sequence[int],
    seeds: int,
    rounds: Callable[[int], int],
    methods: Sequence[Method] = tuple(METHODS.values()),
    progress: bool = True,
) -> list[RunTrace]:
    """Every (problem, d, method, seed); budget = 8 · rounds(d) queries for every method."""
    jobs = [(p, d, mt, s) for p in problems for d in dims for mt in methods for s in range(seeds)]
    traces = []
    bar = progress_bar(jobs, "bench functions", enabled=progress, unit="run")
    for problem, d, method, seed in bar:
        bar.set_postfix_str(f"{problem} d={d} {method.label}", refresh=False)
        traces.append(run_one(method, problem, d, seed, budget=8 * rounds(d)))
    return traces


@dataclass
class Summary:
    """Medians over seeds of one (problem, d, method)."""

    problem: str
    d: int
    method: str
    runs: int
    reached: int
    queries_to_target: float  # median; inf when fewer than half the runs reached the target
    rounds_to_target: float
    final_ratio: float  # median f(x_final) / f(x0)
    rounds_run: float  # median rounds run within the budget
    budget: int


def _median_with_inf(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))  # inf counts as "larger than any", which is what we want


def summarize(traces: Sequence[RunTrace], budget: Callable[[int], int]) -> list[Summary]:
    """Group the runs by (problem, d, method), in first-seen order, and take medians."""
    out = []
    for (problem, d, method), ts in group_by(traces, lambda t: (t.problem, t.d, t.method)).items():
        hits = [t.to_target() for t in ts]
        out.append(
            Summary(
                problem=problem,
                d=d,
                method=method,
                runs=len(ts),
                reached=sum(h is not None for h in hits),
                queries_to_target=_median_with_inf([math.inf if h is None else h[0] for h in hits]),
                rounds_to_target=_median_with_inf([math.inf if h is None else h[1] for h in hits]),
                final_ratio=_median_with_inf(
                    [math.inf if t.diverged else t.final / t.f0 for t in ts]
                ),
                rounds_run=float(statistics.median([t.rounds for t in ts])),
                budget=budget(d),
            )
        )
    return out


# -- output ---------------------------------------------------------------------------------------
def _fmt_hits(s: Summary) -> str:
    if math.isinf(s.queries_to_target):
        return f"— ({s.reached}/{s.runs})"
    return f"{s.queries_to_target:.0f} ({s.rounds_to_target:.0f}) {s.reached}/{s.runs}"


def markdown_tables(summaries: Sequence[Summary]) -> str:
    """One table per problem: a row per method, per d the queries (rounds) to target and final."""
    lines: list[str] = []
    problems = list(dict.fromkeys(s.problem for s in summaries))
    for problem in problems:
        rows = [s for s in summaries if s.problem == problem]
        dims = sorted({s.d for s in rows})
        methods = list(dict.fromkeys(s.method for s in rows))
        lines.append(
            f"**{problem}** — median queries (rounds) to f ≤ {TARGET_FRACTION:g}·f(x0), "
            "runs that reached it, and median final f/f(x0):"
        )
        lines.append("")
        head = ["method"]
        for d in dims:
            budget = next(s.budget for s in rows if s.d == d)
            head += [f"d={d}: to target", f"d={d}: final (budget {budget})"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        index = {(s.d, s.method): s for s in rows}
        for method in methods:
            cells = [method]
            for d in dims:
                s = index.get((d, method))
                cells += ["", ""] if s is None else [_fmt_hits(s), f"{s.final_ratio:.2g}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(traces: Sequence[RunTrace], out_dir: Path) -> list[Path]:
    """One PNG per problem: median f/f0 over seeds against queries, a panel per d."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    problems = list(dict.fromkeys(t.problem for t in traces))
    for problem in problems:
        ts = [t for t in traces if t.problem == problem]
        dims = sorted({t.d for t in ts})
        methods = list(dict.fromkeys(t.method for t in ts))
        fig = Figure(figsize=(5.0 * len(dims), 4.2), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(dims), squeeze=False)[0]
        for ax, d in zip(axes, dims, strict=True):
            budget = max(t.queries[-1] for t in ts if t.d == d) or 1
            grid = [budget * i / 200 for i in range(201)]
            for j, method in enumerate(methods):
                runs = [t for t in ts if t.d == d and t.method == method]
                if not runs:
                    continue
                curves = [t.curve(grid) for t in runs]
                med = [statistics.median(c[i] for c in curves) for i in range(len(grid))]
                style = "--" if "ZO-RankSGD" not in method else "-"
                ax.plot(
                    grid,
                    [max(v, 1e-12) for v in med],
                    style,
                    label=method,
                    color=f"C{j % 10}",
                    linewidth=1.4,
                )
            ax.axhline(TARGET_FRACTION, color="grey", linewidth=0.8, linestyle=":")
            ax.set_yscale("log")
            ax.set_title(f"{problem}, d = {d}")
            ax.set_xlabel("function queries (candidates shown)")
            ax.set_ylabel("median f(x) / f(x0)")
            ax.grid(True, which="major", alpha=0.3)
        axes[0].legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = out_dir / f"bench_functions_{problem}.png"
        fig.savefig(path)
        paths.append(path)
    return paths


# -- command line ---------------------------------------------------------------------------------
_FULL_DIMS = (10, 100, 1000)
_QUICK_DIMS = (10, 100)


def _parser(prog: str) -> argparse.ArgumentParser:
    quick = f"d in {list(_QUICK_DIMS)}, 2 seeds, max(100, 3·d) rounds (under a minute)"
    seeds = "runs per (problem, d, method); medians are reported (default 5)"
    p = bench_parser(prog, _DESCRIPTION, quick=quick, seeds=seeds, loop=True, out=True)
    dims = f"dimensions (default {' '.join(map(str, _FULL_DIMS))}; d >= 2)"
    p.add_argument("--dims", type=positive_int, nargs="+", metavar="D", help=dims)
    rounds = (
        "budget: N rounds of 8 candidates, i.e. 8·N queries for every method "
        "(default max(200, 5·d); max(100, 3·d) with --quick)"
    )
    p.add_argument("--rounds", type=positive_int, default=None, metavar="N", help=rounds)
    problems = f"problems (default: all, {' '.join(PROBLEMS)})"
    p.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), help=problems)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "labkit bench functions") -> int:
    """Entry point of ``labkit bench functions ARGS...``; returns the exit status."""
    args = parse_args(_parser(prog), argv)
    dims = args.dims or (_QUICK_DIMS if args.quick else _FULL_DIMS)
    if min(dims) < 2:
        print(f"{prog}: error: every d must be >= 2 (Rosenbrock); got {dims}", file=sys.stderr)
        return 2
    seeds = args.seeds or (2 if args.quick else 5)
    problems = args.problems or list(PROBLEMS)
    per_d, least = (3, 100) if args.quick else (5, 200)

    def rounds(d: int) -> int:
        return int(args.rounds) if args.rounds is not None else max(least, per_d * d)

    t0 = time.perf_counter()
    with limited_threads(args.threads):
        traces = run_functions(
            problems=problems, dims=dims, seeds=seeds, rounds=rounds, progress=args.progress
        )
    elapsed = time.perf_counter() - t0

    def budget(d: int) -> int:
        return 8 * rounds(d)

    summaries = summarize(traces, budget)
    table = markdown_tables(summaries)
    print(
        f"# labkit bench functions: dims {list(dims)}, {seeds} seeds, budget "
        + ", ".join(f"{budget(d)} queries at d={d}" for d in dims)
        + f" ({elapsed:.1f} s)"
    )
    print()
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_traces(RunTrace, traces, args.out / "runs.csv")
        (args.out / "summary.md").write_text(table + "\n")
        for path in plot(traces, args.out):
            print(f"wrote {path}")
        print(f"wrote {args.out / 'runs.csv'} and {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
