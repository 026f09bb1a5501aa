"""``labkit bench control``: policies from rankings of rollouts (the paper's RL setting, smaller).

Linear policies (``a = clip(W o + b)``, θ starting at zero) on MuJoCo Swimmer-v5, Reacher-v5,
HalfCheetah-v5 and Hopper-v5, plus CartPole-v1 and Pendulum-v1 as a fast sanity row. Every method
gets the same budget of **episodes** (rollouts shown to the judge). The judge is a ranking oracle
built from the returns: it sees the ``m`` returns of a round and passes on only their order (the
top ``k`` of ``m``), except for the value-based ZO-SGD baseline, which is told the returns
themselves (:meth:`labkit.optim.zo_sgd.ZOSGD.tell_values`).

Each training episode of a run starts from ``env.reset(seed=1000·run_seed)``: all candidates of
all rounds meet the same start state, as a person comparing rollouts side by side would want.
The curves report the return of the method's *iterate* (ZO-RankSGD's x, CMA-ES's mean), averaged
over ``EVAL_EPISODES`` held-out start states (seeds 10⁶ + …), every ``EVAL_EVERY`` rounds; those
evaluation episodes are not counted in the budget, since no judge sees them.

Methods and their fixed hyperparameters (d = number of policy parameters). They were chosen once,
by hand, on a small grid with one seed and 320 episodes at horizon 150 — ZO-RankSGD m=8:
``RANK_LR`` ∈ {1/16, 1/8, 1/4, 1/2, 1, 2, 4} × μ ∈ {0.02, 0.05, 0.1}; CMA-ES: σ₀ ∈ {0.02, 0.05,
0.1, 0.3}; ZO-SGD: ``ZOSGD_LR`` ∈ {0.1, 0.25, 0.5, 1, 2} — taking the best final HalfCheetah
return among the settings that also learned on Swimmer, and then fixed for every environment,
m and k:

* ``ZO-RankSGD m=…, k=…``: Algorithm 1, lr = ``RANK_LR``/√d, μ = ``RANK_MU``. The ranked
  estimate has norm ≈ √d·(a constant of m and k), so lr ∝ 1/√d keeps the step length per
  round the same in every environment.
* ``CMA-ES (ranks)``: pycma told ranks, its default population 4 + ⌊3 ln d⌋, σ₀ = ``CMA_SIGMA``.
* ``ZO-SGD (values) m=8``: two-point estimates from 4 directions, μ = ``RANK_MU``, and
  lr = ``ZOSGD_LR``/√d divided by the spread of returns of its first round (a value-based step is
  proportional to return differences, whose scale differs by orders of magnitude between
  environments; one fixed normalisation at the start keeps it a plain ZO-SGD afterwards).

Rollout throughput (episodes per second, in-process and through a local Ray instance of
``--ray-cpus`` workers) is measured on HalfCheetah at the benchmark's horizon.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from labkit.bench._common import bench_parser, parse_args, positive_int
from labkit.bench._harness import Trace, progress_bar, step_values, write_traces
from labkit.bench._methods import Method, build, registry

__all__ = ["ENVS", "METHODS", "EnvSetting", "Method", "RunTrace", "main", "run_one"]

#: What ``--help`` says the benchmark does.
_DESCRIPTION = (
    "Linear policies from rankings of rollouts: ZO-RankSGD (several m, k), CMA-ES told "
    "ranks and value-based ZO-SGD at equal episode budgets on MuJoCo Swimmer, Reacher, "
    "HalfCheetah, Hopper and classic CartPole/Pendulum; plus rollout throughput."
)


@dataclass(frozen=True)
class EnvSetting:
    """An environment of the benchmark: its id, horizon and episode budget per run."""

    env_id: str
    horizon: int
    budget: int  # episodes
    quick_budget: int
    mujoco: bool = True


#: Environments, horizons and budgets (see docs/benchmarks.md for the measured cost).
ENVS: dict[str, EnvSetting] = {
    "Swimmer": EnvSetting("Swimmer-v5", horizon=150, budget=640, quick_budget=96),
    "Reacher": EnvSetting("Reacher-v5", horizon=50, budget=480, quick_budget=96),
    "HalfCheetah": EnvSetting("HalfCheetah-v5", horizon=150, budget=640, quick_budget=96),
    "Hopper": EnvSetting("Hopper-v5", horizon=150, budget=640, quick_budget=96),
    "CartPole": EnvSetting("CartPole-v1", horizon=200, budget=160, quick_budget=96, mujoco=False),
    "Pendulum": EnvSetting("Pendulum-v1", horizon=200, budget=320, quick_budget=96, mujoco=False),
}

# Tuned-but-fixed constants (see the module docstring).
RANK_LR = 0.25
RANK_MU = 0.02
CMA_SIGMA = 0.05
ZOSGD_LR = 0.25
EVAL_EVERY = 4
EVAL_EPISODES = 2


#: The contenders, by label (their constants are the module's, above).
METHODS: dict[str, Method] = registry(
    Method("ZO-RankSGD m=8", "zorank", m=8),
    Method("ZO-RankSGD m=8 k=2", "zorank", m=8, k=2),
    Method("ZO-RankSGD m=16 k=4", "zorank", m=16, k=4),
    Method("CMA-ES (ranks)", "cmaes", m=None),
    Method("ZO-SGD (values) m=8", "zosgd", m=8),
)


@dataclass
class RunTrace(Trace):
    """One run: the iterate's evaluation return after ``episodes[i]`` training episodes."""

    #: One CSV row per evaluation point: env, method, seed, episodes, return, run seconds.
    CSV_FIELDS = ("env", "method", "seed", "episodes", "return", "run_seconds")

    env: str
    method: str
    seed: int
    episodes: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    x: torch.Tensor | None = None  # the final iterate

    @property
    def final(self) -> float:
        return self.returns[-1]

    def csv_rows(self) -> Iterator[dict[str, Any]]:
        for e, r in zip(self.episodes, self.returns, strict=True):
            yield {
                "env": self.env,
                "method": self.method,
                "seed": self.seed,
                "episodes": e,
                "return": f"{r:.4f}",
                "run_seconds": f"{self.seconds:.2f}",
            }


def _build(method: Method, x0: torch.Tensor, seed: int) -> Any:
    d = x0.numel()
    options = {
        "zorank": {"lr": RANK_LR / math.sqrt(d), "mu": RANK_MU},
        "cmaes": {"sigma": CMA_SIGMA},
        "zosgd": {"lr": ZOSGD_LR / math.sqrt(d), "mu": RANK_MU},
    }
    if method.kind not in options:
        raise ValueError(f"unknown method kind {method.kind!r}")
    return build(method, x0, seed=seed, **options[method.kind])


def run_one(
    name: str,
    method: Method,
    seed: int,
    *,
    budget: int,
    horizon: int | None = None,
    executor: Any = None,
) -> RunTrace:
    """One run of ``method`` on environment ``name`` (a key of :data:`ENVS`) within ``budget``
    training episodes."""
    from labkit.judges import ranking_from_values
    from labkit.tasks.control import ControlTask

    setting = ENVS[name]
    h = horizon if horizon is not None else setting.horizon
    task = ControlTask(setting.env_id, horizon=h, seed=1000 * seed, executor=executor)
    judge_eval = ControlTask(
        setting.env_id, horizon=h, seed=10**6 + 100 * seed, episodes=EVAL_EPISODES
    )
    opt = _build(method, task.x0(), seed)
    trace = RunTrace(env=name, method=method.label, seed=seed)
    t0 = time.perf_counter()
    trace.episodes.append(0)
    trace.returns.append(float(judge_eval.score(opt.x.reshape(1, -1))[0]))
    used, rounds = 0, 0
    value_scale: float | None = None
    while True:
        m = int(opt.m)
        if used + m > budget:
            break
        X = opt.ask()
        R = task.score(X)
        if method.kind == "zosgd":
            if value_scale is None:  # one normalisation of the step, from the first round
                spread = float(R.std())
                value_scale = spread if spread > 0 else 1.0
                opt.lr = opt.lr / value_scale
            opt.tell_values(-R)  # ZO-SGD minimizes
        else:
            k = method.k if method.k is not None else m
            opt.tell(ranking_from_values(R, k=k, maximize=True))
        used += m
        rounds += 1
        if rounds % EVAL_EVERY == 0 or used + m > budget:
            trace.episodes.append(used)
            trace.returns.append(float(judge_eval.score(opt.x.reshape(1, -1))[0]))
    trace.seconds = time.perf_counter() - t0
    trace.x = opt.x.detach().reshape(-1).clone()
    return trace


# -- summaries ------------------------------------------------------------------------------------
def _quantiles(xs: Sequence[float]) -> tuple[float, float, float]:
    """Median and the lowest and highest value (the spread over seeds)."""
    return float(statistics.median(xs)), float(min(xs)), float(max(xs))


def markdown_table(traces: Sequence[RunTrace], budgets: dict[str, int]) -> str:
    """A row per method, a column per environment: median final return [min, max] over seeds."""
    envs = list(dict.fromkeys(t.env for t in traces))
    methods = list(dict.fromkeys(t.method for t in traces))
    head = ["method"] + [f"{e} ({budgets[e]} ep.)" for e in envs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    start = {e: statistics.median([t.returns[0] for t in traces if t.env == e]) for e in envs}
    lines.append("| zero policy (start) | " + " | ".join(f"{start[e]:.1f}" for e in envs) + " |")
    for method in methods:
        cells = [method]
        for e in envs:
            finals = [t.final for t in traces if t.env == e and t.method == method]
            if not finals:
                cells.append("")
                continue
            med, lo, hi = _quantiles(finals)
            cells.append(f"{med:.1f} [{lo:.1f}, {hi:.1f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(traces: Sequence[RunTrace], path: Path) -> Path:
    """Median evaluation return against training episodes, a panel per environment, shaded
    between the lowest and highest seed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    envs = list(dict.fromkeys(t.env for t in traces))
    methods = list(dict.fromkeys(t.method for t in traces))
    cols = min(3, len(envs))
    rows = math.ceil(len(envs) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for ax, env in zip(axes, envs, strict=False):
        ts = [t for t in traces if t.env == env]
        budget = max(t.episodes[-1] for t in ts) or 1
        grid = list(range(0, budget + 1, max(1, budget // 100)))
        for j, method in enumerate(methods):
            runs = [t for t in ts if t.method == method]
            if not runs:
                continue
            curves = [step_values(t.episodes, t.returns, grid) for t in runs]
            med = [statistics.median(c[i] for c in curves) for i in range(len(grid))]
            lo = [min(c[i] for c in curves) for i in range(len(grid))]
            hi = [max(c[i] for c in curves) for i in range(len(grid))]
            style = "-" if "ZO-RankSGD" in method else "--"
            ax.plot(grid, med, style, color=f"C{j}", label=method, linewidth=1.4)
            ax.fill_between(grid, lo, hi, color=f"C{j}", alpha=0.12, linewidth=0)
        ax.set_title(env)
        ax.set_xlabel("training episodes (rollouts judged)")
        ax.set_ylabel("return of the iterate")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(envs) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def views_strip(
    env_id: str, policies: Sequence[tuple[str, torch.Tensor]], path: Path, *, horizon: int
) -> Path:
    """A PNG of what a person sees: per policy (a row), five moments of its rollout's view."""
    import io

    from PIL import Image, ImageDraw, ImageSequence

    from labkit.tasks.control import ControlTask

    task = ControlTask(env_id, horizon=horizon, width=192)
    views = task.render(torch.stack([x for _, x in policies]))
    rows = []
    for (label, _), data in zip(policies, views, strict=True):
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(Image.open(io.BytesIO(data)))]
        # GIF merges identical consecutive frames; spread the picks over the durations instead.
        times = [int(f.info.get("duration", 0)) for f in frames]
        total = sum(times) or 1
        picks, acc, j = [], 0, 0
        for q in (0.0, 0.25, 0.5, 0.75, 0.999):
            while j + 1 < len(frames) and acc + times[j] <= q * total:
                acc += times[j]
                j += 1
            picks.append(frames[j])
        w, h = picks[0].size
        row = Image.new("RGB", (w * len(picks), h + 14), "white")
        for i, f in enumerate(picks):
            row.paste(f, (i * w, 14))
        ImageDraw.Draw(row).text((4, 1), label, fill=(0, 0, 0))
        rows.append(row)
    out = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    out.save(path)
    return path


# -- throughput -----------------------------------------------------------------------------------
def throughput(*, env: str, horizon: int, m: int, rounds: int, ray_cpus: int | None) -> list[str]:
    """Episodes/s of ``rounds`` rounds of ``m`` rollouts, in-process and (if asked) with Ray."""
    from labkit.tasks.control import ControlTask

    lines = []
    g = torch.Generator().manual_seed(0)

    def measure(task: ControlTask) -> float:
        X = 0.1 * torch.randn(m, task.n_params, generator=g)
        task.score(X)  # warm-up: environments made (and Ray workers started)
        t0 = time.perf_counter()
        for _ in range(rounds):
            task.score(X)
        return rounds * m / (time.perf_counter() - t0)

    local = ControlTask(env, horizon=horizon)
    lines.append(f"| in-process | 1 | {measure(local):.1f} |")
    if ray_cpus is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            lines.append("| Ray | — | not installed |")
        else:
            from labkit.executors import RayExecutor

            t0 = time.perf_counter()
            ex = RayExecutor(num_cpus=ray_cpus)
            start = time.perf_counter() - t0
            try:
                eps = measure(ControlTask(env, horizon=horizon, executor=ex))
            finally:
                ex.shutdown()
            lines.append(f"| Ray (local, start {start:.0f} s) | {ex.workers} | {eps:.1f} |")
    return lines


def view_time(*, env: str, horizon: int, repeats: int = 3) -> float:
    """Seconds to prepare the views of 8 rollouts (in-process, best of ``repeats``)."""
    from labkit.tasks.control import ControlTask

    task = ControlTask(env, horizon=horizon)
    X = 0.2 * torch.randn(8, task.n_params, generator=torch.Generator().manual_seed(0))
    task.render(X[:1])
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        task.render(X)
        best = min(best, time.perf_counter() - t0)
    return best


# -- command line ---------------------------------------------------------------------------------
_QUICK_ENVS = ("CartPole", "Swimmer", "HalfCheetah")


def _parser(prog: str) -> argparse.ArgumentParser:
    quick = f"{', '.join(_QUICK_ENVS)}, 2 seeds, 96 episodes each, no Ray (under a minute)"
    seeds = "runs per (env, method)"
    p = bench_parser(prog, _DESCRIPTION, quick=quick, seeds=seeds, loop=True, out=True)
    p.add_argument("--envs", nargs="+", choices=list(ENVS), default=None, help="environments")
    budget = "episodes per run (default: per env)"
    p.add_argument("--budget", type=positive_int, default=None, help=budget)
    ray_help = "workers of the local Ray instance for the throughput row (default 2)"
    p.add_argument("--ray-cpus", type=positive_int, default=2, help=ray_help)
    p.add_argument("--no-ray", action="store_true", help="skip the Ray throughput row")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "labkit bench control") -> int:
    """Entry point of ``labkit bench control ARGS...``; returns the exit status."""
    args = parse_args(_parser(prog), argv)
    try:
        import gymnasium  # noqa: F401
    except ImportError:
        print(f"{prog}: error: needs gymnasium: pip install 'labkit[control]'", file=sys.stderr)
        return 2
    envs = list(args.envs or (_QUICK_ENVS if args.quick else ENVS))
    try:
        import mujoco  # noqa: F401
    except ImportError:
        skipped = [e for e in envs if ENVS[e].mujoco]
        if skipped:
            print(f"mujoco is not installed: skipping {', '.join(skipped)}", file=sys.stderr)
        envs = [e for e in envs if not ENVS[e].mujoco]
    seeds = args.seeds or (2 if args.quick else 3)
    budgets = {
        e: args.budget or (ENVS[e].quick_budget if args.quick else ENVS[e].budget) for e in envs
    }
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        jobs = [(e, mt, s) for e in envs for mt in METHODS.values() for s in range(seeds)]
        bar = progress_bar(jobs, "bench control", enabled=args.progress)
        traces = []
        for env, method, seed in bar:
            bar.set_postfix_str(f"{env} {method.label}", refresh=False)
            traces.append(run_one(env, method, seed, budget=budgets[env]))
        elapsed = time.perf_counter() - t0
        mj = [e for e in envs if ENVS[e].mujoco]
        tp_env = "HalfCheetah" if "HalfCheetah" in mj else (mj[0] if mj else envs[0])
        setting = ENVS[tp_env]
        tp = throughput(
            env=setting.env_id,
            horizon=setting.horizon,
            m=8,
            rounds=2 if args.quick else 10,
            ray_cpus=None if (args.quick or args.no_ray) else args.ray_cpus,
        )
        views = view_time(env=setting.env_id, horizon=300, repeats=1 if args.quick else 3)
    finally:
        torch.set_num_threads(before)
    table = markdown_table(traces, budgets)
    horizons = ", ".join(f"{e} {ENVS[e].horizon}" for e in envs)
    print(f"# labkit bench control: {seeds} seeds, horizons {horizons} ({elapsed:.0f} s)")
    print()
    print("Median final return of the iterate [lowest, highest seed]:")
    print()
    print(table)
    print()
    print(f"Rollout throughput, {setting.env_id}, horizon {setting.horizon}, rounds of 8:")
    print()
    print("| executor | workers | episodes/s |")
    print("|---|---|---|")
    print("\n".join(tp))
    print()
    print(f"Views of 8 rollouts ({setting.env_id}, 300 steps, stick figures): {views:.2f} s")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_traces(RunTrace, traces, args.out / "runs.csv")
        (args.out / "summary.md").write_text(table + "\n")
        png = plot(traces, args.out / "control_curves.png")
        print(f"wrote {png}, {args.out / 'runs.csv'} and {args.out / 'summary.md'}")
        first = next(iter(METHODS))  # the label of the first method
        shown = [
            t
            for t in traces
            if t.env == tp_env and t.method == first and t.seed == 0 and t.x is not None
        ]
        if shown and shown[0].x is not None:
            x = shown[0].x
            strip = views_strip(
                setting.env_id,
                [
                    ("zero policy (start)", torch.zeros_like(x)),
                    (f"{first}, {shown[0].episodes[-1]} episodes", x),
                ],
                args.out / "control_views.png",
                horizon=setting.horizon,
            )
            print(f"wrote {strip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
