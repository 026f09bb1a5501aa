"""``labkit bench steer``: how many rounds a simulated person needs to get what they have in mind.

A person's round is the scarce resource. This benchmark gives each method the same simulated
person with a *target in mind* and counts what the person sees, round by round:

* **best seen after r rounds** — the smallest perceived distance to the target among every
  candidate shown so far (line-search rounds and incumbents included: every round the person
  ranks counts);
* **rounds to match resampling** — the first round at which the method's best seen is at least
  as close as what 30 rounds of plain resampling reach (fresh samples from the prior every
  round, keep the best): ``resampling_best`` of the same target and person.

**Tasks** (``--tasks``), each with its targets drawn from a *split*:

===============  ===================================================================================
``digits``       the digits app as it ships: unconditional latents, 4 DDIM steps; the target is a
                 digit image of scikit-learn's digits (train split: the images the generator learnt
                 from; test split: the held-out images it never saw)
``digits-cond``  the same with the model told the target's digit (the app's "The model draws: 3")
``digits-class`` the model told the digit, and the class embedding steered too (``latents+class``)
``quickstart``   the quickstart app's point on its map; the target is a point of the map
``control``      the control app's policy; the target is a behaviour: a running pace in m/s
===============  ===================================================================================

**People** (``--people``): the ranking follows a perceived distance to the target, with
Plackett–Luce noise: the person's order is the order of ``−d_i/T + Gumbel noise`` (drawing the
best first with probability ∝ exp(−d_i/T), then the best of the rest, ...). ``T`` is a fraction
``tau`` of the task's distance scale (the spread of the distances of prior samples to the
target), so ``tau`` means the same on every task. Images are perceived either as pixels at 8×8
(``pixels``) or as the held-out digit classifier's logits (``features``). The careless person
also swaps two neighbours of the ranking now and then and sometimes puts an arbitrary candidate
first.

**Tuning discipline.** Targets come from ``--split train`` (tuning: the constants of
:func:`labkit.make_optimizer` were chosen on these) or ``--split test`` (reporting: nothing was
ever tuned on them). The tables in docs/benchmarks.md are from the test split.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labkit.bench._common import bench_parser, limited_threads, parse_args, pick, positive_int
from labkit.bench._harness import Trace, progress_bar, write_traces
from labkit.optim.base import RankOptimizer
from labkit.ranking import Ranking

__all__ = [
    "METHODS",
    "PEOPLE",
    "TASKS",
    "Person",
    "RunTrace",
    "main",
    "run_steer",
    "summarize",
]

#: What ``--help`` says the benchmark does.
_DESCRIPTION = (
    "Simulated people with a target in mind steer the apps' tasks; rounds to match what "
    "30 rounds of resampling reach, and the best seen after 5/10/20/30 rounds."
)

M = 8
ROUNDS = 30
#: Rounds at which the best seen is reported.
CHECKPOINTS = (5, 10, 20, 30)


# ---------------------------------------------------------------------------------------------
# People
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonSpec:
    """How a simulated person perceives and ranks."""

    name: str
    perception: str  # "pixels" or "features" (images only; other tasks have one perception)
    tau: float  # Plackett–Luce temperature, as a fraction of the task's distance scale
    swap: float = 0.0  # probability of swapping one random pair of neighbours
    arbitrary: float = 0.0  # probability of putting a random candidate first


PEOPLE: dict[str, PersonSpec] = {
    "pl": PersonSpec("pl", "pixels", tau=0.3),
    "pl-noisy": PersonSpec("pl-noisy", "pixels", tau=1.0),
    "features": PersonSpec("features", "features", tau=0.3),
    "careless": PersonSpec("careless", "pixels", tau=0.3, swap=0.3, arbitrary=0.1),
}


class Person:
    """A simulated person: perceived distances ``distance(X) -> (m,)`` and a noisy ranking.

    ``rank(d, k)`` returns the top ``k`` (best first) of a Plackett–Luce draw with utilities
    ``−d/T``: adding independent Gumbel noise to the utilities and sorting draws exactly from the
    Plackett–Luce model (the Gumbel-max trick, applied position after position).
    """

    def __init__(
        self,
        spec: PersonSpec,
        distance: Callable[[torch.Tensor], torch.Tensor],
        *,
        scale: float,
        seed: int,
    ) -> None:
        self.spec = spec
        self.distance = distance
        self.temperature = spec.tau * scale
        self._rng = np.random.default_rng(seed)

    def rank(self, d: np.ndarray, k: int) -> Ranking:
        m = len(d)
        gumbel = self._rng.gumbel(size=m)
        order = [int(i) for i in np.argsort(-(-d / self.temperature + gumbel), kind="stable")]
        if self.spec.swap and self._rng.random() < self.spec.swap and m > 1:
            p = int(self._rng.integers(0, m - 1))
            order[p], order[p + 1] = order[p + 1], order[p]
        if self.spec.arbitrary and self._rng.random() < self.spec.arbitrary:
            pick = int(self._rng.integers(0, m))
            order.remove(pick)
            order.insert(0, pick)
        return tuple(order[:k])


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """One target of one task: what an optimizer starts from and what the person perceives."""

    task: Any  # the labkit task the optimizer's candidates belong to
    x0: torch.Tensor
    distance: Callable[[torch.Tensor], torch.Tensor]  # candidates (m, ...) -> (m,) distances
    scale: float  # spread of the distances of prior samples (for the person's temperature)
    prior: Callable[[int, int], torch.Tensor]  # (n, seed) -> n prior samples, for resampling


class _Digits:
    """The digits tasks; the model and classifier are loaded once and shared."""

    def __init__(self) -> None:
        from labkit.models.digits import DigitClassifier, load_digit_images, load_digits_model

        self.model = load_digits_model()
        self.classifier = DigitClassifier()
        self.images = {s: load_digit_images(s) for s in ("train", "held_out")}

    def targets(self, split: str, n: int) -> list[int]:
        images, _ = self.images["train" if split == "train" else "held_out"]
        g = torch.Generator().manual_seed(7)
        return torch.randperm(len(images), generator=g)[:n].tolist()

    def problem(self, name: str, split: str, target: int, perception: str, seed: int) -> Problem:
        from labkit.tasks.diffusion import DigitsTask

        images, labels = self.images["train" if split == "train" else "held_out"]
        image, label = images[target], int(labels[target])
        optimize = "latents+class" if name == "digits-class" else "latents"
        task = DigitsTask(
            label,
            condition=None if name == "digits" else "digit",
            model=self.model,
            classifier=self.classifier,
            optimize=optimize,  # type: ignore[arg-type]
        )
        perceive = self._perception(perception)
        goal = perceive(image.unsqueeze(0))[0]

        def distance(X: torch.Tensor) -> torch.Tensor:
            return (perceive(task.images(X)) - goal).norm(dim=1)

        def prior(n: int, s: int) -> torch.Tensor:
            g = torch.Generator().manual_seed(s)
            z = torch.randn(n, *task.latent_shape, generator=g)
            if optimize == "latents+class":
                z = torch.cat([z.flatten(1), torch.zeros(n, task.class_dim)], dim=1)
            return z

        scale = float(distance(prior(32, 10**6 + seed)).std())
        return Problem(task, task.x0(seed=1000 + seed), distance, scale, prior)

    def _perception(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        if name == "pixels":
            return lambda images: torch.nn.functional.avg_pool2d(images, 2).flatten(1)
        return lambda images: self.classifier.logits(images)


def _quickstart_problem(split: str, target: int, seed: int) -> Problem:
    from labkit.tasks.functions import FunctionTask

    task = FunctionTask("sphere")  # the quickstart app's map
    (x_lo, x_hi), (y_lo, y_hi) = task.box
    lo = torch.tensor([x_lo, y_lo])
    width = torch.tensor([x_hi - x_lo, y_hi - y_lo])
    # The point in mind: uniform in the map's middle 80 % (train and test targets from disjoint
    # seeds).
    g = torch.Generator().manual_seed(target + (0 if split == "train" else 10**6))
    goal = lo + width * (0.1 + 0.8 * torch.rand(2, generator=g))

    def distance(X: torch.Tensor) -> torch.Tensor:
        return (X.reshape(-1, 2) - goal).norm(dim=1)

    def prior(n: int, s: int) -> torch.Tensor:
        gp = torch.Generator().manual_seed(s)
        return lo + width * torch.rand(n, 2, generator=gp)

    scale = float(distance(prior(32, 10**6 + seed)).std())
    return Problem(task, task.x0(seed=0), distance, scale, prior)


class _Control:
    """The control app's task; the target behaviour is a running pace (mean reward per step)."""

    def __init__(self) -> None:
        from labkit.apps.control import control_task

        self.task = control_task()

    def problem(self, split: str, target: int, seed: int) -> Problem:
        task = self.task
        g = np.random.default_rng(target + (0 if split == "train" else 10**6))
        # HalfCheetah's reward per step is the forward speed (m/s) minus a small control cost:
        # the mean reward is the pace. CartPole (no MuJoCo): the target is a number of steps up.
        if task.env_id.startswith("HalfCheetah"):
            goal = float(g.uniform(-1.0, 2.0))
        else:
            goal = float(g.uniform(0.3, 1.0))
        horizon = task.horizon

        def distance(X: torch.Tensor) -> torch.Tensor:
            pace = task.score(X).to(torch.float32) / horizon
            return (pace - goal).abs()

        def prior(n: int, s: int) -> torch.Tensor:
            from labkit.defaults import task_scale

            gp = torch.Generator().manual_seed(s)
            return task.x0() + task_scale(task) * torch.randn(n, task.n_params, generator=gp)

        scale = float(distance(prior(32, 10**6 + seed)).std())
        return Problem(task, task.x0(), distance, max(scale, 1e-6), prior)


TASKS = ("digits", "digits-cond", "digits-class", "quickstart", "control")


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


def _resampling(problem: Problem, seed: int) -> RankOptimizer:
    return _Resample(problem, seed)


class _Resample(RankOptimizer):
    """Fresh prior samples every round; the best is remembered by the benchmark, not shown."""

    def __init__(self, problem: Problem, seed: int) -> None:
        super().__init__()
        self._problem, self._seed_base, self._x0 = problem, seed, problem.x0
        self.k = M

    @property
    def x(self) -> torch.Tensor:
        return self._x0

    def _ask(self) -> torch.Tensor:
        return self._problem.prior(M, 10**7 * (1 + self._seed_base) + self.rounds)

    def _tell(self, ranking: Ranking, ties: tuple[int, ...]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:  # pragma: no cover - never saved
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # pragma: no cover
        pass


def _zo(problem: Problem, seed: int, *, lr: float, mu: float, ls: int = 0) -> RankOptimizer:
    from labkit.defaults import task_scale
    from labkit.optim import ZORankSGD

    s = task_scale(problem.task)
    return ZORankSGD(problem.x0, lr=lr * s, mu=mu * s, m=M, line_search=ls, seed=seed)


def _cma(problem: Problem, seed: int, *, sigma: float = 1.0) -> RankOptimizer:
    from labkit.defaults import task_scale
    from labkit.optim import CMAES

    return CMAES(problem.x0, sigma=sigma * task_scale(problem.task), m=M, seed=seed)


def _thompson(problem: Problem, seed: int, **options: Any) -> RankOptimizer:
    from labkit.defaults import task_scale
    from labkit.optim import PreferenceThompson

    return PreferenceThompson(problem.x0, m=M, scale=task_scale(problem.task), seed=seed, **options)


def _default(problem: Problem, seed: int) -> RankOptimizer:
    from labkit.defaults import make_optimizer

    return make_optimizer(problem.task, problem.x0, m=M, seed=seed)


#: name -> builder(problem, seed). Scales are in units of the task's scale (labkit.defaults).
METHODS: dict[str, Callable[[Problem, int], RankOptimizer]] = {
    "resampling": _resampling,
    "Algorithm 1": lambda p, s: _zo(p, s, lr=0.5, mu=1.0),
    "line search": lambda p, s: _zo(p, s, lr=8.0, mu=1.0, ls=6),
    "CMA-ES": _cma,
    "default": _default,
    # Variants of the default's model, for tuning (--methods).
    "Thompson sphere": lambda p, s: _thompson(p, s, geometry="sphere"),
    "Thompson local": lambda p, s: _thompson(p, s, geometry="local"),
}
DEFAULT_METHODS = ("resampling", "Algorithm 1", "line search", "CMA-ES", "default")


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


@dataclass
class RunTrace(Trace):
    """One run: ``best[r]`` is the best distance seen after ``r + 1`` rounds."""

    #: One CSV row per run and round: the best seen so far (what :func:`read_csv` reads back).
    CSV_FIELDS = ("task", "person", "method", "split", "target", "round", "best_seen")

    task: str
    person: str
    method: str
    split: str
    target: int
    best: list[float] = field(default_factory=list)

    def csv_rows(self) -> Iterator[dict[str, Any]]:
        run: dict[str, Any] = {"task": self.task, "person": self.person, "method": self.method}
        run |= {"split": self.split, "target": self.target}
        for r, b in enumerate(self.best, start=1):
            yield {**run, "round": r, "best_seen": f"{b:.6g}"}


def run_one(problem: Problem, person: Person, method: str, rounds: int, seed: int) -> list[float]:
    """The best-seen curve of ``method`` steered by ``person`` for ``rounds`` rounds."""
    opt = METHODS[method](problem, seed)
    k = opt.k or M
    best = math.inf
    curve = []
    for _ in range(rounds):
        X = opt.ask()
        d = problem.distance(X).detach().cpu().to(torch.float64).numpy()
        best = min(best, float(d.min()))
        curve.append(best)
        opt.tell(person.rank(d, min(k, len(d))))
    return curve


def run_steer(
    *,
    tasks: Sequence[str],
    people: Sequence[str],
    methods: Sequence[str],
    split: str,
    targets: int,
    rounds: int,
    progress: bool = True,
    first: int = 0,
) -> list[RunTrace]:
    """Every run of tasks × people × targets × methods (resampling always included).

    ``first`` skips the first targets (to split one benchmark over several processes; the
    targets are the same whatever the split, and :func:`read_csv` joins the parts).
    """
    if "resampling" not in methods:
        methods = ["resampling", *methods]
    digits = _Digits() if any(t.startswith("digits") for t in tasks) else None
    control = _Control() if "control" in tasks else None
    grid = []
    for t in tasks:
        for pname in people:
            spec = PEOPLE[pname]
            if not t.startswith("digits") and spec.perception != "pixels":
                continue  # one perception outside images: skip the duplicate
            ids = digits.targets(split, targets) if digits and t.startswith("digits") else None
            for n in range(first, targets):
                grid.append((t, spec, n, ids[n] if ids else n))
    traces = []
    for t, spec, n, target in progress_bar(grid, "targets", enabled=progress):
        if t.startswith("digits"):
            assert digits is not None
            problem = digits.problem(t, split, target, spec.perception, n)
        elif t == "quickstart":
            problem = _quickstart_problem(split, target, n)
        else:
            assert control is not None
            problem = control.problem(split, target, n)
        for method in methods:
            # The same person (same noise stream) for every method of a target.
            person = Person(spec, problem.distance, scale=problem.scale, seed=n)
            t0 = time.perf_counter()
            curve = run_one(problem, person, method, rounds, seed=n)
            seconds = time.perf_counter() - t0
            traces.append(RunTrace(t, spec.name, method, split, target, curve, seconds=seconds))
    return traces


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


@dataclass
class Summary:
    """One method on one task with one person, over the targets."""

    task: str
    person: str
    method: str
    n: int
    best_ratio: dict[int, tuple[float, float, float]]  # r -> (q25, median, q75) of best/resampling
    match: tuple[float, float, float]  # rounds to match resampling / rounds (q25, median, q75)
    never: int  # targets not matched within the rounds
    vs_cma10: float | None  # median over targets of best@10 / CMA-ES's best@10


def _quartiles(x: Sequence[float]) -> tuple[float, float, float]:
    # No interpolation between order statistics: "never" (inf) stays inf instead of nan.
    q = np.quantile(np.asarray(x, dtype=np.float64), [0.25, 0.5, 0.75], method="nearest")
    return float(q[0]), float(q[1]), float(q[2])


def summarize(traces: Sequence[RunTrace]) -> list[Summary]:
    """Medians and quartiles over targets, per task, person and method."""
    by: dict[tuple[str, str, str], dict[int, list[float]]] = {}
    for tr in traces:
        by.setdefault((tr.task, tr.person, tr.method), {})[tr.target] = tr.best
    out = []
    for (task, person, method), curves in by.items():
        ref = by[(task, person, "resampling")]
        cma = by.get((task, person, "CMA-ES"))
        rounds = len(next(iter(curves.values())))
        ratios: dict[int, list[float]] = {r: [] for r in CHECKPOINTS if r <= rounds}
        match, vs_cma = [], []
        never = 0
        for target, curve in curves.items():
            level = ref[target][-1]
            for r in ratios:
                ratios[r].append(curve[r - 1] / level if level > 0 else 1.0)
            hit = next((i + 1 for i, b in enumerate(curve) if b <= level), None)
            if hit is None:
                never += 1
            match.append((hit if hit is not None else math.inf) / rounds)
            if cma is not None and rounds >= 10 and cma[target][9] > 0:
                vs_cma.append(curve[9] / cma[target][9])
        out.append(
            Summary(
                task,
                person,
                method,
                len(curves),
                {r: _quartiles(v) for r, v in ratios.items()},
                _quartiles(match),
                never,
                float(np.median(vs_cma)) if vs_cma else None,
            )
        )
    return out


def _f(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.2f}"


def markdown_table(summaries: Sequence[Summary]) -> str:
    """One row per task, person and method (medians over targets, quartiles in brackets)."""
    lines = [
        "| task | person | method | targets | rounds to match resampling's 30, ÷ 30 "
        "| never matched | best seen ÷ resampling's, after 5 / 10 / 20 / 30 rounds "
        "| best seen after 10 ÷ CMA-ES's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lo, med, hi = s.match
        best = " / ".join(f"{v[1]:.2f}" for _, v in sorted(s.best_ratio.items()))
        vs = "" if s.vs_cma10 is None else f"{s.vs_cma10:.2f}"
        lines.append(
            f"| {s.task} | {s.person} | {s.method} | {s.n} | {_f(med)} [{_f(lo)}, {_f(hi)}] "
            f"| {s.never} | {best} | {vs} |"
        )
    return "\n".join(lines)


def read_csv(path: Path) -> list[RunTrace]:
    """The runs of a ``runs.csv`` that :func:`main` wrote (``RunTrace.csv_rows``)."""
    runs: dict[tuple[str, str, str, str, int], RunTrace] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            key = (row["task"], row["person"], row["method"], row["split"], int(row["target"]))
            tr = runs.setdefault(key, RunTrace(*key))
            if int(row["round"]) != len(tr.best) + 1:
                raise ValueError(f"{path}: rounds of {key} are not in order at {row['round']}")
            tr.best.append(float(row["best_seen"]))
    return list(runs.values())


def plot_curves(traces: Sequence[RunTrace], path: Path) -> None:
    """Best seen ÷ resampling's 30-round best against rounds, median over targets, one line per
    method, one panel per task and person."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = sorted({(t.task, t.person) for t in traces})
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    FigureCanvasAgg(fig)
    # One colour per method in every panel.
    names = list(dict.fromkeys([*METHODS, *sorted({t.method for t in traces})]))
    colour = {name: f"C{i % 10}" for i, name in enumerate(names)}
    ref = {(t.task, t.person, t.target): t.best[-1] for t in traces if t.method == "resampling"}
    for i, (task, person) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        methods = sorted({t.method for t in traces if (t.task, t.person) == (task, person)})
        for method in methods:
            curves = [
                np.asarray(t.best) / ref[(task, person, t.target)]
                for t in traces
                if (t.task, t.person, t.method) == (task, person, method)
            ]
            med = np.median(np.stack(curves), axis=0)
            ax.plot(np.arange(1, len(med) + 1), med, label=method, color=colour[method])
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{task}, {person}", fontsize=9)
        ax.set_xlabel("rounds the person ranked")
        if i % cols == 0:
            ax.set_ylabel("best seen ÷ resampling's 30-round best")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    p = bench_parser(prog, _DESCRIPTION, loop=True, out=True)
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=["digits"])
    p.add_argument("--people", nargs="+", choices=sorted(PEOPLE), default=["pl"])
    methods = "resampling always runs (it is the reference)"
    p.add_argument(
        "--methods", nargs="+", choices=sorted(METHODS), default=list(DEFAULT_METHODS), help=methods
    )
    split = "targets for tuning (train) or for reporting (test, the default)"
    p.add_argument("--split", choices=("train", "test"), default="test", help=split)
    p.add_argument("--targets", type=positive_int, default=30, help="targets per task (30)")
    p.add_argument("--rounds", type=positive_int, default=ROUNDS, help="rounds per run (30)")
    first = "skip the targets before this one (split a run)"
    p.add_argument("--first", type=int, default=0, help=first)
    tabulate = "no runs: tabulate (and plot, with --out) the runs.csv files given"
    p.add_argument("--from-csv", nargs="+", type=Path, metavar="CSV", help=tabulate)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "labkit bench steer") -> int:
    """Entry point of ``labkit bench steer ARGS...``; returns the exit status."""
    args = parse_args(_parser(prog), argv)
    if args.from_csv:
        traces = [tr for path in args.from_csv for tr in read_csv(path)]
        print(markdown_table(summarize(traces)))
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            plot_curves(traces, args.out / "curves.png")
        return 0
    t0 = time.perf_counter()
    with limited_threads(args.threads):
        options = ("tasks", "people", "methods", "split", "targets", "rounds", "progress", "first")
        traces = run_steer(**pick(args, *options))
    print(
        f"# labkit bench steer: {args.split} targets ({args.targets} per task), m = {M}, "
        f"{args.rounds} rounds ({time.perf_counter() - t0:.0f} s)"
    )
    print()
    print(markdown_table(summarize(traces)))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_traces(RunTrace, traces, args.out / "runs.csv")
        plot_curves(traces, args.out / "curves.png")
        print(f"\nwrote {args.out / 'runs.csv'} and {args.out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
